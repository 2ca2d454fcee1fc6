"""Realized accuracy: the join of stored forecasts with actuals, per-version and per-step
metrics, and the retrain decision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.series import DATE, SERIES
from forecastflow.orchestration import monitor


def stored(version: str, origin: str, dates: pd.DatetimeIndex, values: np.ndarray,
           key: str, width: float = 5.0, sid: str | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({
        "target": "y", DATE: dates, "step": np.arange(1, len(dates) + 1), "forecast": values,
        "lower": values - width, "upper": values + width, "model_version": version,
        "family": "naive", "origin": pd.Timestamp(origin), "run_key": key})
    if sid is not None:
        frame.insert(0, SERIES, sid)
    return frame


def history(n: int = 36) -> pd.DataFrame:
    index = pd.date_range("2020-01-01", periods=n, freq="MS", name=DATE)
    return pd.DataFrame({"y": 100.0 + np.arange(n, dtype=float)}, index=index)


def test_realized_accuracy_per_version_and_step():
    y = history(36)  # y = 100 + t: seasonal-naive (m=12) in-sample MAE is exactly 12
    origin = "2021-12-01"
    dates = pd.date_range("2022-01-01", periods=3, freq="MS")
    actual = y.loc[dates, "y"].to_numpy()
    good = stored("1", origin, dates, actual + 1.0, "a")
    bad = stored("2", origin, dates, actual + 24.0, "b", width=1.0)
    # The same forecast stored again by a later run counts once.
    points = monitor.matched_points(pd.concat([good, good.assign(run_key="a2"), bad]),
                                    y.loc[:"2022-02-01"], season=12)
    assert len(points) == 4  # two dates have actuals, two versions
    summary = monitor.summarize(points).set_index(["model_version", "step"])
    assert summary.loc[("1", 0), "n"] == 2
    # Scale: mean |y_t - y_{t-12}| before the origin = 12.
    assert summary.loc[("1", 0), "mase"] == pytest.approx(1.0 / 12.0)
    assert summary.loc[("2", 0), "mase"] == pytest.approx(2.0)
    assert summary.loc[("1", 1), "rmse"] == pytest.approx(1.0)
    assert summary.loc[("1", 0), "coverage"] == 1.0 and summary.loc[("2", 0), "coverage"] == 0.0
    retrain, reason = monitor.decide(summary.reset_index(), "2", 1.5, 1)
    assert retrain and "2.000" in reason and "max_mase 1.5" in reason
    retrain, reason = monitor.decide(summary.reset_index(), "1", 1.5, 1)
    assert not retrain and "version 1" in reason
    assert not monitor.decide(summary.reset_index(), "2", 1.5, 5)[0]  # too few points
    assert not monitor.decide(summary.reset_index(), "2", None, 1)[0]


def test_panels_and_no_actuals_yet():
    frames = []
    for k, sid in enumerate(("a", "b")):
        one = history(30) * (k + 1)
        one.index = pd.MultiIndex.from_product([[sid], one.index], names=[SERIES, DATE])
        frames.append(one)
    y = pd.concat(frames)
    dates = pd.date_range("2022-07-01", periods=2, freq="MS")
    fc = pd.concat([stored("1", "2022-06-01", dates, np.array([500.0, 500.0]), "k", sid=s)
                    for s in ("a", "b")])
    assert monitor.matched_points(fc, y, 12).empty  # no actual for July yet
    assert monitor.summarize(monitor.matched_points(fc, y, 12)).empty
    assert monitor.decide(monitor.summarize(monitor.matched_points(fc, y, 12)), "1", 1.5,
                          1) == (False, "no stored forecast has an actual yet")
    later = pd.concat(frames)
    points = monitor.matched_points(fc.assign(**{DATE: pd.Timestamp("2022-05-01")}), later, 12)
    assert set(points[SERIES]) == {"a", "b"}


def test_realized_points_are_stored_per_forecast_run_once(tmp_path):
    """Each forecast partition gets its points with actuals (forecast, actual, error per
    series and period); a point stored by two forecast runs counts once (the later run);
    an unchanged partition is not rewritten and an older monitor run never overwrites a
    newer one's rows."""
    from forecastflow.lifecycle.forecast_store import FORECASTS, REALIZED, ParquetForecastStore

    store = ParquetForecastStore(tmp_path)
    y = history(36)
    dates = pd.date_range("2022-01-01", periods=3, freq="MS")
    first = stored("1", "2021-12-01", dates, y.loc[dates, "y"].to_numpy() + 1.0, "k1")
    again = first.assign(run_key="k2")  # the same forecast, stored by a later run
    for key, frame in (("k1", first), ("k2", again)):
        store.write("p", key, FORECASTS, frame)
    points = monitor.matched_points(store.read("p", FORECASTS), y.loc[:"2022-02-01"], 12)
    june = pd.Timestamp("2022-06-01")
    assert monitor.store_realized(store, "p", points, june) == 1  # k2 only; k1 stays empty
    realized = store.read("p", REALIZED)
    assert len(realized) == 2 and set(realized["run_key"]) == {"k2"}
    assert realized["error"].tolist() == [-1.0, -1.0]
    assert {SERIES, "target", DATE, "forecast", "actual", "error", "as_of"} <= set(realized)
    assert monitor.store_realized(store, "p", points, june) == 0  # unchanged: no rewrite
    more = monitor.matched_points(store.read("p", FORECASTS), y, 12)
    assert monitor.store_realized(store, "p", more, pd.Timestamp("2022-05-01")) == 0  # older
    assert monitor.store_realized(store, "p", more, june + pd.Timedelta(days=1)) == 1
    assert len(store.read("p", REALIZED)) == 3
