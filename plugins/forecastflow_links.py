"""Airflow plugin: an "MLflow run" button on every ForecastFlow training task, and every
ForecastFlow task's peak memory in its log.

The training tasks push the URL of their DAG run's MLflow parent run to XCom under this link's
key (``forecastflow.orchestration.constants.LINK_KEY``); the link reads it back. The MLflow UI
address is ``FORECASTFLOW_MLFLOW_UI`` (default: the tracking server when ``MLFLOW_TRACKING_URI`` is
http(s), else http://localhost:5000).
"""

from __future__ import annotations

import logging
import resource

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from forecastflow.orchestration.constants import LINK_KEY


class MLflowRunLink(BaseOperatorLink):
    name = "MLflow run"

    @property
    def xcom_key(self) -> str:
        return LINK_KEY

    def get_link(self, operator, *, ti_key) -> str:  # noqa: ANN001
        # Called by the API server, which reads XCom from the metadata DB (the task SDK's
        # XCom client only works inside a running task).
        from airflow.serialization.definitions.operatorlink import XComOperatorLink

        return XComOperatorLink(name=self.name, xcom_key=LINK_KEY).get_link(operator,
                                                                           ti_key=ti_key)


class PeakMemory:
    """Logs the task process's peak resident memory when a ForecastFlow task ends (called
    in the task's own process, after its work): ``peak memory of this task: N MB``."""

    log = logging.getLogger("forecastflow.memory")

    def _report(self, task_instance) -> None:  # noqa: ANN001 - Airflow's runtime TI
        if not str(getattr(task_instance, "dag_id", "")).startswith(PREFIXES):
            return
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        self.log.info("peak memory of this task: %.0f MB", peak_mb)

    @hookimpl
    def on_task_instance_success(self, previous_state, task_instance) -> None:  # noqa: ANN001
        self._report(task_instance)

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error) -> None:  # noqa: ANN001
        self._report(task_instance)


PREFIXES = ("train_", "forecast_", "monitor_")


class ForecastflowPlugin(AirflowPlugin):
    name = "forecastflow"
    global_operator_extra_links = [MLflowRunLink()]
    listeners = [PeakMemory()]
