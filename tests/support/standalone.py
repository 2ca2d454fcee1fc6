"""`airflow standalone` on this project for local runs (the real-scheduler test, the pipeline
benchmark): start it, wait until its API answers and the DAGs are parsed, stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


@contextmanager
def standalone(env: dict[str, str], port: int, dag_ids: list[str], log_path: Path,
               timeout: float = 300.0) -> Iterator[subprocess.Popen]:
    """Run ``airflow standalone`` (API on ``port``) until the block ends; the block starts
    once the API is healthy and every DAG in ``dag_ids`` is listed."""
    with log_path.open("w") as log:
        server = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + timeout
            while True:
                if _ready(env, port, dag_ids):
                    break
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"airflow standalone did not come up with {dag_ids} "
                                       f"(exit {server.poll()}); see {log_path}")
                time.sleep(2)
            yield server
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def _ready(env: dict[str, str], port: int, dag_ids: list[str]) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2)
    except OSError:
        return False
    listed = subprocess.run([str(BIN / "airflow"), "dags", "list", "-o", "plain"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    return all(dag_id in listed.stdout for dag_id in dag_ids)
