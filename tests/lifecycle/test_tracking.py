"""The embedded MLflow store: concurrent first use by several task processes must not race in
the SQLite schema migration."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from forecastflow.lifecycle import tracking


def _touch(home: str) -> str:
    os.environ["FORECASTFLOW_HOME"] = home
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from forecastflow.lifecycle import tracking

    return tracking.experiment_id("race")


def test_concurrent_first_use_of_a_new_sqlite_store(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = pool.map(_touch, [str(tmp_path)] * 4)
    assert len(set(ids)) == 1  # one experiment, created once; no migration error
    assert (tmp_path / "mlflow.db").exists()


@pytest.fixture
def store(isolated_store):
    return isolated_store


def test_experiments_open_in_the_classic_ml_view(store, monkeypatch):
    from forecastflow.lifecycle import tracking

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
    from forecastflow.lifecycle import tracking

    run = tracking.find_or_create_run("times", {"airflow_run_id": "t"}, run_name="trial",
                                      start_time=1_700_000_000_000)
    tracking.log_run(run, metrics={"m": 1.0}, status="FINISHED", end_time=1_700_000_012_500)
    info = tracking.client().get_run(run).info
    assert (info.start_time, info.end_time) == (1_700_000_000_000, 1_700_000_012_500)


def test_trial_runs_carry_real_times_and_readable_names(store, monthly_data, make_problem):
    """Trial runs are logged after the search: they keep each trial's own start and end
    (not a few ms at logging time) and are named so they can be told apart; the parent run
    is named by problem (and, once validated, the data window) and DAG run."""
    from forecastflow.evaluation.search import Trial, run_trial
    from forecastflow.orchestration import context

    problem = make_problem(models=[{"family": "sarimax"}, {"family": "seasonal_naive"}])
    trials = [Trial("sarimax", {"order": [1, 0, 0], "trend": "c", "maxiter": 25}),
              Trial("sarimax", {"order": [2, 0, 0], "trend": "c", "maxiter": 25}),
              Trial("seasonal_naive", {}, "log")]
    results = [run_trial(t, monthly_data, problem) for t in trials]
    ctx = context.run_context("toy", "train_toy", "manual__2026-01-01T00:00:00",
                              "2026-01-01", "2026-01-01")
    parent = context.parent_run(ctx)
    tracking.log_trials("toy", ctx["run_id"], parent, results)
    mlflow_client = tracking.client()
    assert mlflow_client.get_run(parent).info.run_name == (
        "toy (manual__2026-01-01T00:00:00)")
    assert tracking.parent_run_name("toy", "r1", "2015-01-01..2020-12-01") == (
        "toy 2015-01-01..2020-12-01 (r1)")
    children = {r.data.tags["trial_id"]: r for r in mlflow_client.search_runs(
        [tracking.experiment_id("toy")], f"tags.`mlflow.parentRunId` = '{parent}'")}
    assert len(children) == 3
    for result in results:
        info = children[result.trial.trial_id].info
        assert info.start_time == result.extra["started_at"]
        assert info.start_time < info.end_time
        assert (info.end_time - info.start_time) / 1000 == pytest.approx(result.seconds,
                                                                         abs=0.002)
        assert info.run_name.startswith(result.trial.family)
    names = [children[r.trial.trial_id].info.run_name for r in results]
    assert names == ["sarimax (1,0,0)", "sarimax (2,0,0)", "seasonal_naive log"]


def test_registering_a_second_version_logs_info_not_stderr(store, caplog, capfd):
    """MLflow prints "Registered model ... already exists. Creating a new version" to
    stderr, which an Airflow 3 task log shows as ERROR: it goes through logging at INFO, and
    MLflow's loggers reach the root handlers at their own level."""
    import logging

    import mlflow

    from forecastflow.lifecycle import tracking

    run = tracking.find_or_create_run("chatter", {"airflow_run_id": "c"}, run_name="c")
    tracking.client().log_text(run, "flavors: {}\n", "model/MLmodel")  # a model to register
    mlflow.register_model(f"runs:/{run}/model", "chatter")
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        version = mlflow.register_model(f"runs:/{run}/model", "chatter")
        logging.getLogger("mlflow.store").warning("a library warning")
    assert str(version.version) == "2"
    records = {r.getMessage(): r.levelname for r in caplog.records}
    assert records["Registered model 'chatter' already exists. Creating a new version of "
                   "this model..."] == "INFO"
    assert records["a library warning"] == "WARNING"
    err = capfd.readouterr().err
    assert "already exists" not in err and "a library warning" not in err
