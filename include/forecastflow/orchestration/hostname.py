"""The host name Airflow records for this process's task instances.

Configured as ``AIRFLOW__CORE__HOSTNAME_CALLABLE=forecastflow.orchestration.hostname.name``: on
a host running several Celery workers (the native cluster, ``deploy/local-cluster``) each
worker sets ``FORECASTFLOW_WORKER_NAME`` and its tasks say which worker ran them; elsewhere the
machine's fully qualified name, as Airflow's default.
"""

from __future__ import annotations

import os
import socket


def name() -> str:
    worker = os.environ.get("FORECASTFLOW_WORKER_NAME")
    return f"{worker}@{socket.getfqdn()}" if worker else socket.getfqdn()
