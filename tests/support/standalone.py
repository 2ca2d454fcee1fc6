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
ROOT = Path(__file__).resolve().parents[2]


def standalone_env(home: Path, port: int, parallelism: int) -> dict[str, str]:
    """The environment of ``airflow standalone`` on this project in ``home`` (Airflow home,
    ForecastFlow state and problems folders), LocalExecutor with ``parallelism`` slots and
    one BLAS/OpenMP thread per task (parallelism comes from tasks); the Airflow home is
    created."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW"))}
    env.update({
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "FORECASTFLOW_HOME": str(home / "state"),
        "FORECASTFLOW_PROBLEMS_DIR": str(home / "problems"),
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True)
    return env


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
