"""The embedded MLflow store: concurrent first use by several task processes must not race in
the SQLite schema migration."""

from __future__ import annotations

import multiprocessing
import os

import pytest


def _touch(home: str) -> str:
    os.environ["FORECASTFLOW_HOME"] = home
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from forecastflow import tracking

    return tracking.experiment_id("race")


def test_concurrent_first_use_of_a_new_sqlite_store(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = pool.map(_touch, [str(tmp_path)] * 4)
    assert len(set(ids)) == 1  # one experiment, created once; no migration error
    assert (tmp_path / "mlflow.db").exists()


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("FORECASTFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path
    import mlflow

    mlflow.set_tracking_uri(None)


def test_experiments_open_in_the_classic_ml_view(store, monkeypatch):
    from forecastflow import tracking

    exp = tracking.experiment_id("kind")
    tags = tracking.client().get_experiment(exp).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    # An experiment created before the tag gets it on next use.
    mlflow_client = tracking.client()
    old = mlflow_client.create_experiment("forecastflow/older")
    tracking.experiment_id("older")
    assert mlflow_client.get_experiment(old).tags["mlflow.experimentKind"] == (
        "custom_model_development")
    monkeypatch.setenv("FORECASTFLOW_MLFLOW_UI", "http://mlflow.example:5000/")
    run = tracking.find_or_create_run("kind", {"airflow_run_id": "x"}, run_name="x")
    assert tracking.run_url(run) == (f"http://mlflow.example:5000/#/experiments/{exp}/runs/"
                                     f"{run}?workflowType=machine_learning")


def test_runs_record_when_the_work_started_and_ended(store):
    from forecastflow import tracking

    run = tracking.find_or_create_run("times", {"airflow_run_id": "t"}, run_name="trial",
                                      start_time=1_700_000_000_000)
    tracking.log_run(run, metrics={"m": 1.0}, status="FINISHED", end_time=1_700_000_012_500)
    info = tracking.client().get_run(run).info
    assert (info.start_time, info.end_time) == (1_700_000_000_000, 1_700_000_012_500)


def test_mlflow_chatter_is_logged_at_info_not_printed_to_stderr(store, caplog, capfd):
    """MLflow prints "Registered model ... already exists. Creating a new version" to
    stderr, which an Airflow task log shows as ERROR: it goes through logging at INFO."""
    import logging

    from mlflow.utils.logging_utils import eprint

    from forecastflow import tracking

    tracking.client()
    with caplog.at_level(logging.INFO):
        eprint("Registered model 'x' already exists. Creating a new version of this model...")
        logging.getLogger("mlflow.store").warning("a library warning")
    records = {r.getMessage(): r.levelname for r in caplog.records}
    assert records["Registered model 'x' already exists. Creating a new version of this "
                   "model..."] == "INFO"
    assert records["a library warning"] == "WARNING"
    assert "already exists" not in capfd.readouterr().err
