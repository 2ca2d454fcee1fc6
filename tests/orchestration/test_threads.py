"""Native thread limits: each task fits with its share of the cores, whatever the executor."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info

from forecastflow.orchestration import threads


def pools() -> dict[str, int]:
    return {info["internal_api"]: info["num_threads"] for info in threadpool_info()}


@pytest.mark.parametrize(("concurrent", "cores", "expected"), [
    (4, 2, 1), (1, 2, 2), (2, 8, 4), (3, 8, 2), (64, 8, 1), (0, 4, 4)])
def test_threads_per_task_share_the_cores(concurrent, cores, expected, monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.threads_per_task(concurrent, cores) == expected


def test_env_override_and_bad_value(monkeypatch):
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.threads_per_task(4, 2) == 3
    monkeypatch.setenv(threads.ENV, "many")
    with pytest.raises(ValueError, match="FORECASTFLOW_THREADS='many'"):
        threads.threads_per_task(4, 2)


def test_limited_caps_blas_and_openmp_and_restores(monkeypatch):
    monkeypatch.setenv(threads.ENV, "1")
    with threads.limited(4) as n:
        assert n == 1
        inside = pools()
    assert inside.get("openblas", inside.get("mkl")) == 1
    assert inside["openmp"] == 1  # scikit-learn's gradient boosting
    monkeypatch.delenv(threads.ENV)
    if threads.cores() > 1:
        assert max(pools().values()) > 1  # restored after the block


def test_search_task_fits_inside_the_limit(monkeypatch, tmp_path):
    """The search stage body (what the mapped Airflow task runs) backtests its trials with
    ``cores // parallelism`` native threads, at least one."""
    from forecastflow.data.series import SeriesData
    from forecastflow.evaluation import search
    from forecastflow.orchestration import training

    seen = []

    def record(*args, **kwargs):
        seen.append(pools())
        raise RuntimeError("stop after the first trial")

    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setenv("FORECASTFLOW_HOME", str(tmp_path))
    monkeypatch.setattr(search, "run_trial", record)
    monkeypatch.setattr(training, "effective_problem", lambda ctx: None)
    monkeypatch.setattr(SeriesData, "load", staticmethod(lambda path: None))
    ctx = training.run_context("p", "train_p", "manual__1", "2026-01-01", "2026-01-01",
                               {"parallelism": 4})
    batch = {"batch": 0, "items": [{"trial": {}, "series_slice": None}], "run": {"data": "x"}}
    with pytest.raises(RuntimeError, match="stop after"):
        training.search(ctx, batch)
    expected = max(1, threads.cores() // 4)
    assert seen and all(n == expected for n in seen[0].values()), seen
