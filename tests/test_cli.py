"""The command line: every command finds the same state folder and MLflow store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from forecastflow import cli
from forecastflow.lifecycle import tracking
from tests.conftest import free_port

BIN = Path(sys.executable).parent



@pytest.mark.parametrize("tracking_env", [None, "sqlite:///{home}/elsewhere.db"])
@pytest.mark.parametrize("relative_home", [False, True])
def test_ui_commands_use_the_store_every_command_uses(tmp_path, monkeypatch, tracking_env,
                                                      relative_home):
    home = tmp_path / "state"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FORECASTFLOW_HOME", "state" if relative_home else str(home))
    if tracking_env:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_env.format(home=tmp_path))
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    command = tracking.mlflow_ui_command(port=5123)
    store = command[command.index("--backend-store-uri") + 1]
    assert store == tracking.tracking_uri()
    assert store == (tracking_env.format(home=tmp_path) if tracking_env
                     else f"sqlite:///{home}/mlflow.db")
    artifacts = command[command.index("--default-artifact-root") + 1]
    assert artifacts == tracking.artifact_root() == (home / "mlartifacts").as_uri()
    argv, env = cli.airflow_ui_command()
    assert argv[-1] == "standalone" and env["FORECASTFLOW_HOME"] == str(home)
    assert env["AIRFLOW_HOME"] == str(home / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("dags")
    # Airflow's task processes, in whatever folder they run, resolve the same store.
    worker = subprocess.run(
        [sys.executable, "-c",
         "from forecastflow.lifecycle import tracking; print(tracking.tracking_uri())"],
        env=env, cwd=Path(env["AIRFLOW_HOME"]).parent.parent, capture_output=True, text=True,
        timeout=60, check=True)
    assert worker.stdout.strip() == store


def test_mlflow_ui_points_at_a_tracking_server_instead_of_starting_one(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking.mlflow_ui_command() is None
    assert cli.main(["mlflow-ui"]) == 0
    assert "http://mlflow.internal:5000" in capsys.readouterr().out


def test_mlflow_ui_shows_the_experiments_of_the_state_folder(tmp_path):
    """`forecastflow mlflow-ui` with FORECASTFLOW_HOME set opens that store (it used to open
    an empty one): an experiment created through the library is listed by its REST API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW")}
    env["FORECASTFLOW_HOME"] = str(tmp_path / "state")
    made = subprocess.run(
        [sys.executable, "-c", "from forecastflow.lifecycle import tracking; "
         "print(tracking.experiment_id('ui_check'))"], env=env, capture_output=True,
        text=True, timeout=120, check=True)
    experiment = made.stdout.strip().splitlines()[-1]
    port = free_port()
    ui = subprocess.Popen([str(BIN / "forecastflow"), "mlflow-ui", "--port", str(port)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
                    data=json.dumps({"max_results": 100}).encode(),
                    headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=5) as response:
                    found = json.loads(response.read())["experiments"]
                break
            except OSError:
                if ui.poll() is not None or time.time() > deadline:
                    raise AssertionError(ui.stdout.read().decode()[-3000:]) from None
                time.sleep(1)
        assert {e["name"]: e["experiment_id"] for e in found}["forecastflow/ui_check"] == (
            experiment)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


def test_list_and_errors_name_the_problem(capsys):
    assert cli.main(["list"]) == 0
    assert "us_macro" in capsys.readouterr().out
    assert cli.main(["validate", "no_such_problem"]) == 2
    assert "no_such_problem" in capsys.readouterr().err


def test_demo_hints_are_commands_that_open_the_same_store(tmp_path, monkeypatch):
    """`make demo` ends with where to look: the commands carry the variables it ran with."""
    home = tmp_path / "my state"
    monkeypatch.setenv("FORECASTFLOW_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    hints = cli.ui_hints(str(home / "airflow"))
    prefix = f"FORECASTFLOW_HOME='{home}' make"
    assert f"{prefix} mlflow-ui -> http://localhost:5000  (store sqlite:///{home}/mlflow.db)" in (
        hints)
    assert f"{prefix} airflow-ui" in hints and f"{prefix} serve" in hints
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    hints = cli.ui_hints(str(home / "airflow"))
    assert "make mlflow-ui" not in hints
    assert "MLflow UI:   http://mlflow.internal:5000" in hints
    assert "MLFLOW_TRACKING_URI=http://mlflow.internal:5000 make airflow-ui" in hints
    # The Airflow "MLflow run" button opens that server's UI too.
    monkeypatch.delenv("FORECASTFLOW_MLFLOW_UI", raising=False)
    assert tracking.run_url("abc", experiment="3").startswith(
        "http://mlflow.internal:5000/#/experiments/3/runs/abc")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_targets_run_the_library_commands():
    """No state path in the Makefile: its targets call the commands above, and
    `make STATE=dir` is FORECASTFLOW_HOME=dir."""
    root = Path(cli.repo_root())
    plan = subprocess.run(["make", "--no-print-directory", "-n", "mlflow-ui", "airflow-ui",
                           "serve"], cwd=root, capture_output=True, text=True, check=True,
                          env={k: v for k, v in os.environ.items()
                               if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}).stdout
    assert "forecastflow mlflow-ui" in plan and "forecastflow airflow-ui" in plan
    assert "forecastflow serve" in plan
    assert "sqlite:" not in plan and "AIRFLOW_HOME" not in plan and ".forecastflow" not in plan
    probe = ["make", "--no-print-directory", "--eval",
             "probe: ; @echo \"[$$FORECASTFLOW_HOME]\"", "probe"]
    # Under `make test` the parent make's flags would leak in (and print directories).
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORECASTFLOW_HOME", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run([*probe, "STATE=elsewhere"], cwd=root, env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"[{root / 'elsewhere'}]"
    out = subprocess.run(probe, cwd=root, env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_demo_sources_load_the_demo_problems_data(postgres_url, s3, capsys):
    """`forecastflow demo-sources` fills a database table and an S3 prefix; the demo problems'
    declarations then read them (pointed at this test's database and bucket)."""
    from forecastflow.data.problem import find_problem
    from forecastflow.data.validation import load_data

    prefix = f"s3://{s3.bucket}/crm/sales/"
    assert cli.main(["demo-sources", "--sql", postgres_url, "--s3", prefix]) == 0
    out = capsys.readouterr().out
    assert "table shop_sales: 8034 rows" in out and "187 monthly objects" in out
    for name, source in (("shop_sales_sql", postgres_url), ("shop_sales_s3", prefix)):
        declared = find_problem(name).model_copy(update={"source": source})
        data = load_data(declared)
        assert len(data.series_ids) == 34, name  # 46 cities, 12 dropped as in shop_sales


def test_a_source_server_down_is_exit_3_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "down.yaml"
    path.write_text(f"""name: down
source: postgresql://postgres@127.0.0.1:{free_port()}/nowhere
table: sales
time_column: date
target: y
horizon: 3
models: [{{family: naive}}]
""")
    assert cli.main(["validate", str(path)]) == 3
    assert "database unreachable" in capsys.readouterr().err
