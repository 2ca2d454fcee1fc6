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
        # The search task reads only the slice's rows.
        first = planned[0]["items"][0]["series_slice"]
        part = SeriesData.load(path, first)
        assert part.series_ids == data.series_ids[first[0]:first[1]]
        pd.testing.assert_frame_equal(part.y, data.subset(part.series_ids).y)
    assert sizes[4000] < sizes[40] + 100  # bytes: the same plan, whatever the panel's size


def fit_stages(ctx, selected):
    """The training DAG's fit as its tasks run it: plan_fit, each mapped fit_part, fit."""
    parts = [training.fit_part(ctx, part) for part in training.plan_fit(ctx, selected)]
    return training.fit(ctx, selected, parts[::-1]), parts  # map results in any order


def test_a_large_panel_is_fitted_in_parts_that_serve_as_one_model(make_problem, tmp_path,
                                                                   monkeypatch):
    from forecastflow import storage
    from forecastflow.evaluation.search import Trial

    problem = make_problem(models=[{"family": "theta"}])
    monkeypatch.setenv("FORECASTFLOW_HOME", str(tmp_path))
    monkeypatch.setattr(training, "effective_problem", lambda ctx: problem)
    monkeypatch.setattr(training.tracking, "log_run", lambda *args, **kwargs: None)
    data = big_panel(2 * training.FIT_PART_MIN_SERIES + 10)
    run = {"data": str(data.save(tmp_path / "data.parquet")), "n_series": len(
        data.series_ids), "season": 12, "end": "2021-04-01", "parent_run_id": "r"}
    trial = Trial("theta", {})
    selected = {"trial": trial.to_dict(), "run": run, "predictions": []}
    ctx = training.run_context("toy", "train_toy", "manual__1", "2026-01-01", "2026-01-01",
                               {"parallelism": 4})
    fitted, parts = fit_stages(ctx, selected)
    # Slices of at least FIT_PART_MIN_SERIES: two parts, each task reading only its series.
    assert [p["series_slice"] for p in parts] == [[0, 1005], [1005, 2010]]
    assert len(storage.read_model(parts[1]["model"]).last_) == 1005
    model = storage.read_model(fitted["model"])
    whole = trial.build(problem, 12).fit(data.y)
    pd.testing.assert_frame_equal(model.predict(3).mean, whole.predict(3).mean)
    assert len(json.dumps(parts)) < 1000  # references, not models or ids

    # A small panel, or a global model, is one part: the model fitted as it always was.
    small = {**selected, "run": {**run, "n_series": 1500}}
    assert [p["series_slice"] for p in training.plan_fit(ctx, small)] == [None]
    boosted = {**selected, "trial": Trial("gradient_boosting", {}).to_dict()}
    assert [p["series_slice"] for p in training.plan_fit(ctx, boosted)] == [None]
    one_batch = training.run_context("toy", "train_toy", "manual__1", "2026-01-01",
                                     "2026-01-01", {"parallelism": 1})
    assert len(training.plan_fit(one_batch, selected)) == 1


def test_a_slice_of_a_panel_with_integer_ids_keeps_their_type(tmp_path):
    data = big_panel(5)
    data.y.index = data.y.index.set_levels(range(5), level=SERIES)
    path = data.save(tmp_path / "ints.parquet")
    assert SeriesData.load(path, [1, 3]).series_ids == [1, 2]
