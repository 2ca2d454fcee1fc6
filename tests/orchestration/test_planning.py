"""Search planning: balanced batches whose XCom does not grow with the number of series."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from forecastflow.data.series import DATE, SERIES, SeriesData
from forecastflow.orchestration import planning, training


def big_panel(n_series: int) -> SeriesData:
    rng = np.random.default_rng(0)
    dates = pd.date_range("2018-01-01", periods=40, freq="MS")
    index = pd.MultiIndex.from_product([[f"s{k:05d}" for k in range(n_series)], dates],
                                       names=[SERIES, DATE])
    y = pd.DataFrame({"y": rng.gamma(5.0, 10.0, len(index))}, index=index)
    return SeriesData(y, None, "MS", season=12)


def test_batches_carry_series_slices_not_ids(make_problem, tmp_path, monkeypatch):
    problem = make_problem(models=[{"family": "seasonal_naive"}, {"family": "theta"}])
    monkeypatch.setattr(planning, "effective_problem", lambda ctx: problem)
    monkeypatch.setattr(planning.tracking, "log_run", lambda *args, **kwargs: None)
    sizes = {}
    for n_series in (40, 4000):
        data = big_panel(n_series)
        path = data.save(tmp_path / f"data_{n_series}.parquet")
        ctx = training.run_context("toy", "train_toy", "manual__1", "2026-01-01",
                                   "2026-01-01", {"parallelism": 3})
        planned = planning.plan(ctx, {"data": str(path), "parent_run_id": "r"})
        sizes[n_series] = len(json.dumps(planned))
        assert len(planned) == 3
        for family in ("seasonal_naive", "theta"):
            slices = sorted(item["series_slice"] for batch in planned
                            for item in batch["items"] if item["trial"]["family"] == family)
            covered = [sid for start, stop in slices for sid in data.series_ids[start:stop]]
            assert covered == data.series_ids  # every series once, in order
        # The search task turns a slice back into the ids.
        first = planned[0]["items"][0]["series_slice"]
        assert training._series_slice(data, first) == data.series_ids[first[0]:first[1]]
    assert sizes[4000] < sizes[40] + 100  # bytes: the same plan, whatever the panel's size
