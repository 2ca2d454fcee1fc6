"""The serving fast path against a real MLflow tracking server on loopback (`mlflow server`
with proxied artifacts): alias lookup and download through MLflow's REST API, no client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from forecastflow import storage
from forecastflow.data.series import SeriesData
from forecastflow.evaluation.search import Trial
from forecastflow.lifecycle import registry, tracking
from forecastflow.lifecycle.contract import model_meta
from forecastflow.serving import lookup
from tests.conftest import free_port, problem_for, seasonal_monthly

BIN = Path(sys.executable).parent
NAME = "rest_single"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (home / "server.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{home}/mlflow.db",
         "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise RuntimeError(f"mlflow server did not start: "
                                   f"{(home / 'server.log').read_text()[-2000:]}") from None
            time.sleep(0.25)
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "FORECASTFLOW_HOME")}
    os.environ.update({"MLFLOW_TRACKING_URI": uri, "FORECASTFLOW_HOME": str(home / "client")})
    try:
        yield uri
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()
        mlflow.set_tracking_uri(None)
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_rest_lookup_and_proxied_download(server, tmp_path):
    data = SeriesData(seasonal_monthly(60), None, "MS", season=12)
    problem = problem_for(NAME)
    trial = Trial("seasonal_naive", {}, "none")
    model = trial.build(problem, data.season).fit(data.y)
    path = storage.write_model(model, tmp_path / "model" / "model.pkl")
    meta = model_meta(problem, data, model, {"trial": trial.to_dict()})
    run = tracking.find_or_create_run(NAME, {"airflow_run_id": "r1"}, run_name="r1")
    version = registry.register(NAME, run, path, meta, {"family": "seasonal_naive"})
    registry.promote(NAME, version, ["test"])

    ref = lookup.aliased(NAME, registry.CHAMPION, server)
    assert ref.version == version and ref.tags["family"] == "seasonal_naive"
    assert ref.artifact_uri.startswith("mlflow-artifacts:")  # served through the proxy
    assert lookup.aliased(NAME, "nobody", server) is None
    assert lookup.aliased("no_such_model", registry.CHAMPION, server) is None

    folder = lookup.fetch(ref, tmp_path / "serving" / NAME / version, server)
    loaded, loaded_meta = storage.read_pyfunc_dir(folder)
    assert loaded_meta == meta
    pd.testing.assert_frame_equal(loaded.predict(12).mean, model.predict(12).mean)
    assert len(storage.read_pyfunc_card(folder)["table"]) == 12


def test_rest_lookup_sends_credentials_and_reports_refusals(server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "secret")
    assert lookup._headers() == {"Authorization": "Bearer secret"}
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ann")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    assert lookup._headers() == {"Authorization": "Basic YW5uOnB3"}
    with pytest.raises(lookup.LookupUnavailableError, match=r"GET http://127\.0\.0\.1:9/"):
        lookup.aliased(NAME, "champion", "http://127.0.0.1:9")
