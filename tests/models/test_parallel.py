"""Per-series fits in a process pool give what fitting in the caller gives."""

from __future__ import annotations

import numpy as np
import pytest

from forecastflow.models import PerSeries, build_model, parallel
from tests.conftest import make_panel


def test_chunks_cover_items_in_order():
    chunks = parallel.chunked(list(range(10)), 4)
    assert [len(c) for c in chunks] == [3, 3, 2, 2]
    assert [x for c in chunks for x in c] == list(range(10))
    assert parallel.chunked([1], 8) == [[1]]


def test_jobs_come_from_the_task_share_or_the_environment(monkeypatch):
    monkeypatch.delenv(parallel.ENV, raising=False)
    with parallel.use_jobs(3):
        assert parallel.jobs() == 3
        with parallel.use_jobs(1):
            assert parallel.jobs() == 1
    monkeypatch.setenv(parallel.ENV, "2")
    assert parallel.jobs() == 2
    monkeypatch.setenv(parallel.ENV, "many")
    with pytest.raises(ValueError, match="FORECASTFLOW_JOBS='many'"):
        parallel.jobs()


def test_pool_fits_equal_serial_fits(monkeypatch):
    ids = tuple(f"s{k}" for k in range(10))
    y = make_panel(ids, n=48, levels=tuple(50.0 + 10 * k for k in range(10)))
    params = {"error": "add", "trend": "add", "damped": False, "seasonal": "add"}
    monkeypatch.setenv(parallel.ENV, "1")
    serial = PerSeries(build_model("ets", params, season_length=12)).fit(y).predict(6)
    monkeypatch.setenv(parallel.ENV, "2")
    pooled = PerSeries(build_model("ets", params, season_length=12)).fit(y)
    assert parallel._pool.get("size") == 2  # the pool really ran
    np.testing.assert_allclose(pooled.predict(6).mean.to_numpy(), serial.mean.to_numpy())
    assert list(pooled.models_) == list(ids)
    parallel.shutdown()


def test_fast_ets_splits_its_rows_over_the_pool(monkeypatch):
    from forecastflow.models import fast_ets

    ids = tuple(f"s{k}" for k in range(6))
    y = make_panel(ids, n=40, levels=tuple(50.0 + 10 * k for k in range(6)))
    late = (y.index.get_level_values(0).isin(["s0", "s3"])
            & (y.groupby(level=0).cumcount() < 9).to_numpy())
    y = y[~late]  # two shorter series: the pool gets rows sorted by length
    monkeypatch.setattr(fast_ets, "PARALLEL_MIN_SERIES", 2)
    monkeypatch.setenv(parallel.ENV, "1")
    serial = build_model("fast_ets", {"max_iter": 30}, season_length=12).fit(y)
    monkeypatch.setenv(parallel.ENV, "2")
    pooled = build_model("fast_ets", {"max_iter": 30}, season_length=12).fit(y)
    assert parallel._pool.get("size") == 2
    assert pooled.chosen() == serial.chosen()
    for a, b in zip((serial.predict(4).mean, serial.predict(4).upper),
                    (pooled.predict(4).mean, pooled.predict(4).upper), strict=True):
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9)
