"""The embedded MLflow store: concurrent first use by several task processes must not race in
the SQLite schema migration."""

from __future__ import annotations

import multiprocessing
import os


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
