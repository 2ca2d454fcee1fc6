"""An isolated Airflow + MLflow + ForecastFlow home per test session, on SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("airflow")


def base_env(home: Path, problems: Path | None = None, state: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "FORECASTFLOW_HOME": str(state or home / "state"),
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    })
    if problems is not None:
        env["FORECASTFLOW_PROBLEMS_DIR"] = str(problems)
    return env


@pytest.fixture(scope="session")
def migrated(airflow_home) -> Path:
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=base_env(airflow_home),
                   check=True, capture_output=True, timeout=300)
    return airflow_home


def dags_test(env: dict, dag_id: str, logical_date: str, conf: dict | None = None,
              ) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "airflow"), "dags", "test", dag_id, logical_date]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
