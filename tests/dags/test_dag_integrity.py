"""DAG integrity: every problem gets training, forecast and monitor DAGs that import cleanly,
have tags, retries and docs, and parse without a database, connections or heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from forecastflow.config import problem_files
from tests.dags.conftest import ROOT, base_env

PROBE = """
import json, sys, time
start = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
heavy = [m for m in ("pandas", "statsmodels", "sklearn", "mlflow", "matplotlib")
         if m in sys.modules]
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "heavy": heavy,
    "dags": {d.dag_id: {"tags": sorted(d.tags), "retries": [t.retries for t in d.tasks],
                        "schedule": str(d.schedule), "catchup": d.catchup,
                        "doc": bool(d.doc_md), "params": sorted(d.params.keys()),
                        "tasks": sorted(t.task_id for t in d.tasks)}
             for d in bag.dags.values()},
}))
"""


def parse(tmp_path, extra_env=None):
    env = base_env(tmp_path)
    # A database that does not exist: parsing must not need one.
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "sqlite:////nonexistent/forecastflow/no.db"
    env.update(extra_env or {})
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "dags")], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_problem_has_a_valid_training_dag(tmp_path):
    result = parse(tmp_path)
    assert result["errors"] == {}
    assert result["heavy"] == [], "DAG parsing imported heavy libraries"
    names = [p.stem for p in problem_files()]
    assert sorted(result["dags"]) == sorted(f"{kind}_{n}" for n in names
                                            for kind in ("train", "forecast", "monitor"))
    for dag_id, dag in result["dags"].items():
        assert all(r >= 1 for r in dag["retries"]), dag_id
        assert dag["doc"] and dag["catchup"] is False and "forecastflow" in dag["tags"], dag_id
        if not dag_id.startswith("train_"):
            continue
        assert "training" in dag["tags"], dag_id
        assert {"horizon", "families", "max_trials", "backtest_windows", "metric",
                "force_promotion"} <= set(dag["params"])
        assert {"ingest", "validate", "preprocess", "plan_trials", "search", "select", "fit",
                "evaluate", "register", "promote", "publish_champion"} <= set(dag["tasks"])


def test_schedules_follow_the_yaml(tmp_path):
    dags = parse(tmp_path)["dags"]
    for path in problem_files():
        schedule = yaml.safe_load(path.read_text())["schedule"]
        assert dags[f"train_{path.stem}"]["schedule"] == schedule
        assert dags[f"monitor_{path.stem}"]["schedule"] == schedule
        # Forecasts: on the champion Asset (a promotion) or the schedule, whichever first.
        forecast = dags[f"forecast_{path.stem}"]["schedule"]
        assert f"x-forecastflow://champion/{path.stem}" in forecast, forecast
        assert "AssetOrTimeSchedule" in forecast, forecast


def test_monitor_triggers_training_and_forecast_has_one_task(tmp_path):
    dags = parse(tmp_path)["dags"]
    for path in problem_files():
        assert dags[f"monitor_{path.stem}"]["tasks"] == ["monitor", "needs_retrain",
                                                         "trigger_retrain"]
        assert dags[f"forecast_{path.stem}"]["tasks"] == ["forecast"]
        assert {"problem", "horizon"} <= set(dags[f"forecast_{path.stem}"]["params"])


def test_user_problems_dir_adds_dags_and_a_broken_file_is_skipped(tmp_path):
    folder = tmp_path / "problems"
    folder.mkdir()
    shipped = yaml.safe_load((ROOT / "include/problems/us_macro.yaml").read_text())
    (folder / "my_macro.yaml").write_text(yaml.safe_dump({**shipped, "name": "my_macro",
                                                         "schedule": "0 6 * * 1"}))
    (folder / "broken.yaml").write_text("name: [unclosed\n")
    result = parse(tmp_path, {"FORECASTFLOW_PROBLEMS_DIR": str(folder)})
    assert result["errors"] == {}
    assert "train_my_macro" in result["dags"]
    assert "train_broken" not in result["dags"]
    assert result["dags"]["train_my_macro"]["schedule"] == "0 6 * * 1"
