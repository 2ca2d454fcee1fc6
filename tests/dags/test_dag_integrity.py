"""DAG integrity: every problem gets training, forecast and monitor DAGs that import cleanly,
have tags, retries and docs, and parse without a database, connections or heavy imports."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import yaml

from forecastflow.data.problem import problem_files
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
                        "cron": getattr(d.timetable, "expression", None),
                        "doc": bool(d.doc_md), "doc_md": d.doc_md or "",
                        "start_date": str(d.start_date),
                        "paused_upon_creation": d.is_paused_upon_creation,
                        "params": sorted(d.params.keys()),
                        "schemas": {k: {**d.params.get_param(k).schema,
                                        "description": d.params.get_param(k).description}
                                    for k in d.params},
                        "edges": sorted([u, t.task_id] for t in d.tasks
                                        for u in t.upstream_task_ids),
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
        assert {"ingest", "validate", "profile", "plan_trials", "search", "select", "plan_fit",
                "fit_part", "fit", "evaluate", "register", "promote",
                "publish_champion"} <= set(dag["tasks"])


def test_schedules_follow_the_yaml(tmp_path):
    from forecastflow.orchestration.spec import cron_of

    dags = parse(tmp_path)["dags"]
    for path in problem_files():
        schedule = yaml.safe_load(path.read_text())["schedule"]
        for kind in ("train", "monitor"):
            dag = dags[f"{kind}_{path.stem}"]
            assert dag["cron"] == cron_of(schedule), (kind, schedule, dag["schedule"])
            # Unpausing waits for the next tick: no run for the tick just past, so the UI's
            # "unpause on trigger" starts only the run the user asked for.
            assert "run_immediately=datetime.timedelta(0)" in dag["schedule"], dag["schedule"]
            assert dag["start_date"] == "None", dag["start_date"]
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
    assert result["dags"]["train_my_macro"]["cron"] == "0 6 * * 1"
    assert "$FORECASTFLOW_PROBLEMS_DIR/my_macro.yaml" in result["dags"]["train_my_macro"][
        "doc_md"]


def test_forecast_and_monitor_dags_are_active_from_creation(tmp_path):
    dags = parse(tmp_path)["dags"]
    for path in problem_files():
        assert dags[f"forecast_{path.stem}"]["paused_upon_creation"] is False
        assert dags[f"monitor_{path.stem}"]["paused_upon_creation"] is False
        assert dags[f"train_{path.stem}"]["paused_upon_creation"] is not False


def test_training_graph_is_the_pipeline(tmp_path):
    """Each task depends on what it uses: a chain, one fan-out (the mapped fit parts and
    evaluate) and in."""
    dags = parse(tmp_path)["dags"]
    chain = ["ingest", "validate", "profile", "plan_trials", "search", "select"]
    expected = sorted([*([a, b] for a, b in itertools.pairwise(chain)),
                       ["select", "plan_fit"], ["plan_fit", "fit_part"], ["fit_part", "fit"],
                       ["select", "fit"], ["select", "evaluate"], ["fit", "register"],
                       ["evaluate", "register"], ["register", "promote"],
                       ["promote", "champion_changed"], ["champion_changed", "publish_champion"],
                       ["promote", "publish_champion"]])
    for path in problem_files():
        assert dags[f"train_{path.stem}"]["edges"] == expected


def test_trigger_form_fields_are_titled_and_validated(tmp_path):
    dags = parse(tmp_path)["dags"]
    for path in problem_files():
        declared = [m["family"] for m in yaml.safe_load(path.read_text())["models"]]
        dag = dags[f"train_{path.stem}"]
        schemas = dag["schemas"]
        # The problem is fixed per DAG: a constant, hidden from the form.
        assert schemas["problem"]["const"] == path.stem and "title" not in schemas["problem"]
        families = schemas["families"]
        assert families["type"] == "array" and families["examples"] == declared
        assert families["items"]["enum"] == declared and families["minItems"] == 1
        for name, schema in schemas.items():
            if name != "problem":
                assert schema.get("title") and "_" not in schema["title"], (name, schema)
                assert schema.get("description"), name
        assert schemas["horizon"]["minimum"] == 1 and "maximum" in schemas["horizon"]


def test_dag_docs_show_project_relative_paths(tmp_path):
    dags = parse(tmp_path)["dags"]
    for dag_id, dag in dags.items():
        assert str(ROOT) not in dag["doc_md"], dag_id
        assert "`include/problems/" in dag["doc_md"], dag_id


def test_trigger_form_refuses_an_undeclared_family(tmp_path):
    """The form's JSON schema refuses a family the YAML does not declare (``prophet``, or
    ``gradient_boosting`` for us_macro), an empty or repeated list, and out-of-range values."""
    code = """
import copy, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import ParamValidationError
bag = DagBag(dag_folder=sys.argv[1])
params = bag.dags["train_us_macro"].params
for bad in ({"families": ["prophet"]}, {"families": ["gradient_boosting"]},
            {"families": []}, {"families": ["varmax", "varmax"]}, {"horizon": 0},
            {"metric": "r2"}, {"problem": "shop_sales"}):
    trial = copy.deepcopy(params)
    try:
        for key, value in bad.items():
            trial[key] = value
        trial.validate()
    except (ParamValidationError, ValueError) as err:
        print("refused", key, str(err)[:60].replace(chr(10), " "))
    else:
        print("ACCEPTED", bad)
"""
    env = base_env(tmp_path)
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "sqlite:////nonexistent/forecastflow/no.db"
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags")], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ACCEPTED" not in out.stdout, out.stdout
    assert out.stdout.count("refused") == 7, out.stdout
