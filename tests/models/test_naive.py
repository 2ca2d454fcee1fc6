"""Baselines: point forecasts and the textbook interval widths, checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.series import DATE
from forecastflow.models import Drift, Naive, SeasonalNaive
from forecastflow.models.base import normal_quantile

Z90 = 1.6448536269514722


def frame(values: list[float] | np.ndarray, freq: str = "MS", **more: list[float]) -> (
        pd.DataFrame):
    index = pd.date_range("2020-01-01", periods=len(values), freq=freq, name=DATE)
    return pd.DataFrame({"y": np.asarray(values, dtype=float), **more}, index=index)


def test_normal_quantile():
    assert normal_quantile(0.9) == pytest.approx(Z90)
    assert normal_quantile(0.95) == pytest.approx(1.959964, abs=1e-6)


def test_naive_repeats_last_value_with_sqrt_h_widths():
    y = frame([1.0, 2.0, 4.0, 7.0])
    fc = Naive().fit(y).predict(4)
    np.testing.assert_allclose(fc.mean["y"], 7.0)
    sigma = np.sqrt((1 + 4 + 9) / 3)  # RMS of the one-step changes 1, 2, 3
    half = Z90 * sigma * np.sqrt(np.arange(1, 5))
    np.testing.assert_allclose(fc.upper["y"] - fc.mean["y"], half)
    np.testing.assert_allclose(fc.mean["y"] - fc.lower["y"], half)


def test_naive_handles_several_targets_independently():
    y = frame([1.0, 2.0, 4.0, 7.0], z=[10.0, 10.0, 10.0, 12.0])
    fc = Naive().fit(y).predict(2)
    np.testing.assert_allclose(fc.mean.to_numpy(), [[7.0, 12.0], [7.0, 12.0]])
    width = (fc.upper - fc.lower).iloc[0]
    assert width["y"] == pytest.approx(2 * Z90 * np.sqrt(14 / 3))
    assert width["z"] == pytest.approx(2 * Z90 * np.sqrt(4 / 3))


def test_seasonal_naive_repeats_last_cycle():
    values = [1.0, 2.0, 3.0, 4.0, 2.0, 3.0, 4.0, 6.0]
    fc = SeasonalNaive(season_length=4).fit(frame(values)).predict(6)
    np.testing.assert_allclose(fc.mean["y"], [2.0, 3.0, 4.0, 6.0, 2.0, 3.0])
    sigma = np.sqrt((1 + 1 + 1 + 4) / 4)  # lag-4 differences 1, 1, 1, 2
    k = np.array([0, 0, 0, 0, 1, 1])  # completed cycles before each step
    np.testing.assert_allclose(fc.upper["y"] - fc.mean["y"], Z90 * sigma * np.sqrt(k + 1))


def test_seasonal_naive_without_season_is_naive(monthly):
    a = SeasonalNaive(season_length=None).fit(monthly).predict(5)
    b = Naive().fit(monthly).predict(5)
    np.testing.assert_allclose(a.mean, b.mean)
    np.testing.assert_allclose(a.upper, b.upper)


def test_seasonal_naive_too_short_falls_back_to_naive():
    y = frame([3.0, 5.0, 4.0])
    model = SeasonalNaive(season_length=12).fit(y)
    assert model.m_ == 1
    np.testing.assert_allclose(model.predict(3).mean["y"], 4.0)


def test_seasonal_naive_tracks_seasonal_pattern(monthly):
    fc = SeasonalNaive(season_length=12).fit(monthly).predict(12)
    np.testing.assert_allclose(fc.mean["y"].to_numpy(), monthly["y"].to_numpy()[-12:])


def test_drift_extrapolates_average_change_with_textbook_widths():
    values = [10.0, 12.0, 13.0, 17.0, 18.0]  # changes 2, 1, 4, 1 (mean 2)
    fc = Drift().fit(frame(values)).predict(3)
    np.testing.assert_allclose(fc.mean["y"], [20.0, 22.0, 24.0])
    sigma = np.sqrt(np.mean(np.square(np.array([2.0, 1.0, 4.0, 1.0]) - 2.0)))
    h = np.arange(1, 4)
    width = np.sqrt(h * (1 + h / 4))  # T - 1 = 4
    np.testing.assert_allclose(fc.upper["y"] - fc.mean["y"], Z90 * sigma * width)


def test_drift_is_exact_on_a_line():
    y = frame(5.0 + 3.0 * np.arange(20))
    fc = Drift().fit(y).predict(4)
    np.testing.assert_allclose(fc.mean["y"], 5.0 + 3.0 * np.arange(20, 24))
    assert (fc.upper["y"] - fc.lower["y"]).max() < 1e-6  # no residual variance


def test_baseline_widths_scale_with_coverage(monthly):
    narrow = Naive(coverage=0.5).fit(monthly).predict(3)
    wide = Naive(coverage=0.9).fit(monthly).predict(3)
    ratio = (wide.upper - wide.mean) / (narrow.upper - narrow.mean)
    np.testing.assert_allclose(ratio["y"], normal_quantile(0.9) / normal_quantile(0.5))


def test_baselines_keep_only_a_short_history(monthly):
    model = SeasonalNaive(season_length=12).fit(monthly)
    assert model.history_.shape == (1, 12, 1)  # (series, periods, targets)
    assert Naive().fit(monthly).history_.shape == (1, 1, 1)


def ragged_panel(rng: np.random.Generator, lengths: list[int]) -> pd.DataFrame:
    parts = []
    for k, n in enumerate(lengths):
        dates = pd.date_range(end="2024-12-01", periods=n, freq="MS")
        dates = dates - pd.DateOffset(months=k % 3)  # ragged ends too
        parts.append(pd.DataFrame({"series_id": f"s{k}", DATE: dates,
                                   "y": 50 + rng.normal(0, 5, n).cumsum(),
                                   "z": rng.gamma(2.0, 3.0, n)}))
    return pd.concat(parts).set_index(["series_id", DATE])


@pytest.mark.parametrize("family", [Naive, SeasonalNaive, Drift])
def test_a_panel_equals_each_series_alone(family):
    rng = np.random.default_rng(3)
    panel = ragged_panel(rng, [30, 7, 13, 48, 12])  # two series not longer than a cycle
    panel = panel.loc[["s3", "s1", "s4", "s0", "s2"]]  # series in any order
    make = (lambda: family(season_length=12)) if family is SeasonalNaive else family
    fc = make().fit(panel).predict(14)
    for sid, part in panel.groupby(level="series_id"):
        alone = part.droplevel("series_id").sort_index()
        alone.index = pd.DatetimeIndex(alone.index, freq="MS", name=DATE)
        one = make().fit(alone).predict(14)
        for key in ("mean", "lower", "upper"):
            np.testing.assert_allclose(getattr(fc, key).xs(sid, level="series_id"),
                                       getattr(one, key), err_msg=f"{sid} {key}")


def test_panel_update_moves_every_series_in_the_fitted_order():
    rng = np.random.default_rng(4)
    panel = ragged_panel(rng, [40, 30, 26])
    model = SeasonalNaive(season_length=12).fit(panel.groupby(level="series_id").head(-5))
    moved = model.update(panel.iloc[::-1])  # the whole history, series in another order
    refit = SeasonalNaive(season_length=12).fit(panel)
    np.testing.assert_allclose(moved.predict(6).mean, refit.predict(6).mean)


def test_a_large_panel_is_a_few_arrays():
    import pickle

    rng = np.random.default_rng(5)
    panel = ragged_panel(rng, [36] * 2000)[["y"]]
    model = SeasonalNaive(season_length=12).fit(panel)
    assert len(pickle.dumps(model)) < 2000 * (12 + 4) * 8 + 200_000  # no per-series objects
    assert model.predict(3).mean.shape == (6000, 1)


def test_a_single_series_model_pickled_before_panels_still_forecasts(monthly):
    model = SeasonalNaive(season_length=12).fit(monthly)
    expected = model.predict(5)
    old = dict(model.__dict__, history_=model.history_[0], sigma_=model.sigma_[0],
               m_=int(model.m_[0]), n_train_=int(model.n_[0]))
    del old["n_"]
    restored = object.__new__(SeasonalNaive)
    restored.__setstate__(old)
    np.testing.assert_allclose(restored.predict(5).upper, expected.upper)


def test_series_input_is_accepted(monthly):
    fc = Naive().fit(monthly["y"]).predict(2)
    assert list(fc.mean.columns) == ["y"]
