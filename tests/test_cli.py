"""The command line: every command finds the same state folder and MLflow store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from forecastflow import cli, tracking

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("tracking_env", [None, "sqlite:///{home}/elsewhere.db"])
def test_ui_commands_use_the_store_every_command_uses(tmp_path, monkeypatch, tracking_env):
    home = tmp_path / "state"
    monkeypatch.setenv("FORECASTFLOW_HOME", str(home))
    if tracking_env:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_env.format(home=tmp_path))
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    command = tracking.mlflow_ui_command(port=5123)
    store = command[command.index("--backend-store-uri") + 1]
    assert store == tracking.tracking_uri()
    assert store == (tracking_env.format(home=tmp_path) if tracking_env
                     else f"sqlite:///{home}/mlflow.db")
    argv, env = cli.airflow_ui_command()
    assert argv[-1] == "standalone" and env["FORECASTFLOW_HOME"] == str(home)
    assert env["AIRFLOW_HOME"] == str(home / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("dags")


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
        [sys.executable, "-c", "from forecastflow import tracking; "
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
