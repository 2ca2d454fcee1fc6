"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.series import DATE, SERIES
from forecastflow.evaluation.metrics import (
    LOWER_IS_BETTER,
    METRICS,
    evaluate,
    score,
    seasonal_scale,
)


def single(values: list[float], start: str = "2021-01-01", column: str = "y") -> pd.DataFrame:
    index = pd.date_range(start, periods=len(values), freq="MS", name=DATE)
    return pd.DataFrame({column: values}, index=index)


def panel_of(parts: dict[str, list[float]], start: str = "2021-01-01") -> pd.DataFrame:
    frames = []
    for sid, values in parts.items():
        f = single(values, start)
        f.index = pd.MultiIndex.from_product([[sid], f.index], names=[SERIES, DATE])
        frames.append(f)
    return pd.concat(frames)


@pytest.fixture
def tiny() -> dict[str, pd.DataFrame]:
    return {
        "actual": single([1.0, 2.0, 3.0, 4.0]),
        "mean": single([2.0, 2.0, 2.0, 2.0]),
        "lower": single([0.0, 1.5, 2.5, 5.0]),
        "upper": single([1.5, 2.5, 3.5, 6.0]),
        "train": single([1.0, 3.0, 2.0, 5.0, 4.0, 8.0], start="2020-07-01"),
    }


def test_seasonal_scale_by_hand(tiny):
    # lag-2 differences: |2-1|, |5-3|, |4-2|, |8-5| = 1, 2, 2, 3
    scale = seasonal_scale(tiny["train"], 2)
    assert scale.shape == (1, 1)
    assert scale.iloc[0, 0] == pytest.approx(2.0)
    # lag-1: 2, 1, 3, 1, 4
    assert seasonal_scale(tiny["train"], 1).iloc[0, 0] == pytest.approx(11 / 5)


def test_seasonal_scale_falls_back_to_lag_one_for_short_series(tiny):
    short = tiny["train"].iloc[:3]  # 1, 3, 2 with season 4 > length
    assert seasonal_scale(short, 4).iloc[0, 0] == pytest.approx((2 + 1) / 2)


def test_all_metrics_by_hand(tiny):
    scale = seasonal_scale(tiny["train"], 2)
    m = evaluate(tiny["actual"], tiny["mean"], tiny["lower"], tiny["upper"], scale)
    assert set(m) == set(METRICS)
    # errors actual - forecast: -1, 0, 1, 2
    assert m["rmse"] == pytest.approx(math.sqrt(6 / 4))
    assert m["mae"] == pytest.approx(1.0)
    assert m["mape"] == pytest.approx((1 / 1 + 0 + 1 / 3 + 2 / 4) / 4 * 100)
    assert m["smape"] == pytest.approx((2 / 3 + 0 + 2 / 5 + 4 / 6) / 4 * 100)
    assert m["mase"] == pytest.approx(1.0 / 2.0)
    assert m["coverage"] == pytest.approx(0.75)  # 4 is outside [5, 6]


def test_perfect_forecast(tiny):
    scale = seasonal_scale(tiny["train"], 2)
    a = tiny["actual"]
    m = evaluate(a, a, a - 1, a + 1, scale)
    for name in ("rmse", "mae", "mape", "smape", "mase"):
        assert m[name] == pytest.approx(0.0)
    assert m["coverage"] == 1.0


def test_mape_skips_zero_actuals_and_smape_handles_zero_zero():
    actual = single([0.0, 2.0])
    mean = single([0.0, 1.0])
    scale = pd.DataFrame({"y": [1.0]})
    m = evaluate(actual, mean, mean, mean, scale)
    assert m["mape"] == pytest.approx(50.0)
    assert m["smape"] == pytest.approx((0 + 2 * 1 / 3) / 2 * 100)
    all_zero = evaluate(single([0.0, 0.0]), single([1.0, 1.0]), mean, mean, scale)
    assert math.isnan(all_zero["mape"])


def test_mase_is_nan_for_flat_training():
    flat = single([5.0, 5.0, 5.0, 5.0])
    scale = seasonal_scale(flat, 1)
    m = evaluate(single([5.0]), single([6.0]), single([4.0]), single([7.0]), scale)
    assert math.isnan(m["mase"])
    assert m["mae"] == pytest.approx(1.0)


def test_actual_is_aligned_to_forecast_rows(tiny):
    longer = pd.concat([tiny["actual"], single([100.0], start="2021-05-01")])
    scale = seasonal_scale(tiny["train"], 2)
    a = evaluate(tiny["actual"], tiny["mean"], tiny["lower"], tiny["upper"], scale)
    b = evaluate(longer.iloc[::-1], tiny["mean"], tiny["lower"], tiny["upper"], scale)
    assert a == pytest.approx(b)


def test_targets_are_averaged():
    actual = single([1.0, 1.0]).assign(z=[10.0, 10.0])
    mean = single([2.0, 2.0]).assign(z=[13.0, 13.0])
    scale = pd.DataFrame({"y": [1.0], "z": [1.0]})
    m = evaluate(actual, mean, mean, mean, scale)
    assert m["mae"] == pytest.approx((1 + 3) / 2)
    assert m["mase"] == pytest.approx((1 + 3) / 2)


def test_panel_series_weigh_equally():
    actual = panel_of({"a": [10.0, 10.0], "b": [100.0, 100.0]})
    mean = panel_of({"a": [11.0, 9.0], "b": [103.0, 97.0]})
    train = panel_of({"b": [0.0, 3.0, 6.0], "a": [0.0, 1.0, 2.0]}, start="2020-10-01")
    scale = seasonal_scale(train, 1)
    assert list(scale.index) == ["b", "a"]
    np.testing.assert_allclose(scale.loc[["a", "b"], "y"], [1.0, 3.0])
    m = evaluate(actual, mean, mean - 1, mean + 1, scale)
    # per-series RMSE 1 and 3, averaged (pooled RMSE would be sqrt(5))
    assert m["rmse"] == pytest.approx(2.0)
    assert m["mae"] == pytest.approx(2.0)
    # MASE looks up each series' own scale (1 and 3): both 1
    assert m["mase"] == pytest.approx(1.0)
    assert m["mape"] == pytest.approx((0.1 + 0.1 + 0.03 + 0.03) / 4 * 100)
    assert m["coverage"] == pytest.approx(0.5)  # only a's errors of 1 are inside


def test_panel_rmse_is_mean_of_series_rmse_with_unequal_errors():
    actual = panel_of({"a": [0.0, 0.0, 0.0], "b": [0.0, 0.0, 0.0]})
    mean = panel_of({"a": [1.0, 1.0, 1.0], "b": [0.0, 0.0, 6.0]})
    scale = pd.DataFrame({"y": [1.0, 1.0]}, index=pd.Index(["a", "b"], name=SERIES))
    m = evaluate(actual, mean, mean, mean, scale)
    assert m["rmse"] == pytest.approx((1.0 + math.sqrt(12.0)) / 2)
    assert m["mae"] == pytest.approx((1.0 + 2.0) / 2)


def test_score_orders_smaller_is_better():
    metrics = {"mase": 0.8, "coverage": 0.85}
    assert score(metrics, "mase", 0.9) == 0.8
    assert score(metrics, "coverage", 0.9) == pytest.approx(0.05)
    assert score({"coverage": 0.95}, "coverage", 0.9) == pytest.approx(0.05)
    assert math.isnan(score({}, "rmse", 0.9))
    assert all(LOWER_IS_BETTER[m] for m in METRICS if m != "coverage")


def test_panel_metrics_equal_each_series_scored_alone():
    """The panel's scale and metrics are array passes: they equal the per-series values,
    for ragged series, short ones (lag 1) and a missing value."""
    rng = np.random.default_rng(3)
    frames = []
    for k, length in enumerate((30, 12, 5, 1, 25)):
        dates = pd.date_range("2020-01-01", periods=length, freq="MS")
        frames.append(pd.DataFrame({"y": rng.gamma(3.0, 10.0, length)}, index=pd.MultiIndex
                                   .from_product([[f"s{k}"], dates], names=[SERIES, DATE])))
    train = pd.concat(frames).iloc[::-1]  # rows in any order: each series in its own order
    train.iloc[-3, 0] = np.nan
    scale = seasonal_scale(train, 12)
    for sid, one in train.groupby(level=SERIES, sort=False):
        lag = 12 if len(one) > 12 else 1
        values = one["y"].to_numpy()
        expected = np.nanmean(np.abs(values[lag:] - values[:-lag])) if len(one) > 1 else np.nan
        np.testing.assert_allclose(scale.loc[sid, "y"], expected)
    assert list(scale.index) == ["s4", "s3", "s2", "s1", "s0"]
    actual = train.dropna()
    mean = actual * 1.1
    got = evaluate(actual, mean, mean - 5.0, mean + 5.0, scale)
    per = [np.mean(np.abs(g - g * 1.1)) / scale.loc[sid, "y"]
           for sid, g in actual["y"].groupby(level=SERIES, sort=False)]
    assert got["mase"] == pytest.approx(np.nanmean(per))


def test_a_panel_window_without_actuals_scores_nan():
    dates = pd.date_range("2020-01-01", periods=3, freq="MS")
    index = pd.MultiIndex.from_product([["a"], dates], names=[SERIES, DATE])
    actual = pd.DataFrame({"y": [1.0, 2.0, 3.0]}, index=index)
    later = pd.MultiIndex.from_product([["a"], dates + pd.DateOffset(years=1)],
                                       names=[SERIES, DATE])
    mean = pd.DataFrame({"y": [1.0, 2.0, 3.0]}, index=later)
    got = evaluate(actual, mean, mean, mean, seasonal_scale(actual, 12))
    assert math.isnan(got["mase"]) and math.isnan(got["rmse"])
