"""auto_arima: unit-root decisions and the stepwise AICc search."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastflow.models import ModelError, build_model
from forecastflow.models.arima import differences, seasonal_differences


def frame(values: np.ndarray, freq: str = "MS") -> pd.DataFrame:
    index = pd.date_range("2000-01-01", periods=len(values), freq=freq, name="date")
    return pd.DataFrame({"y": values}, index=index)


def test_unit_root_tests_choose_the_differences():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, 200)
    assert differences(noise, 2) == 0
    assert differences(np.cumsum(noise), 2) == 1
    assert differences(np.cumsum(np.cumsum(noise)), 2) == 2
    assert differences(np.cumsum(np.cumsum(noise)), 1) == 1  # max_d caps it
    t = np.arange(120)
    seasonal = 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, 120)
    assert seasonal_differences(seasonal, 12) == 1
    assert seasonal_differences(rng.normal(0, 1, 120), 12) == 0


def test_stepwise_search_finds_an_ar1():
    rng = np.random.default_rng(1)
    x = np.zeros(240)
    for k in range(1, 240):
        x[k] = 0.7 * x[k - 1] + rng.normal()
    model = build_model("auto_arima", {"max_P": 0, "max_Q": 0}, season_length=1).fit(
        frame(50 + x))
    assert model.order_ == (1, 0, 0)
    assert model.trend_ == "c"
    assert model.label() == "ARIMA(1,0,0) + const"
    assert model.fit_info_["models_tried"] >= 4
    fc = model.predict(6)
    assert (fc.lower.to_numpy() < fc.mean.to_numpy()).all()


def test_a_random_walk_with_drift_gets_d1_and_a_drift():
    rng = np.random.default_rng(2)
    y = frame(100 + np.cumsum(rng.normal(2.0, 1.0, 150)))
    model = build_model("auto_arima", {"max_p": 1, "max_q": 1}, season_length=1).fit(y)
    assert model.order_[1] == 1 and model.trend_ == "c"
    assert model.label() == "ARIMA(0,1,0) + drift"
    slope = np.diff(model.predict(12).mean["y"].to_numpy()).mean()
    assert slope == pytest.approx(2.0, abs=0.5)


def test_negative_bounds_are_refused_by_name():
    with pytest.raises(ModelError, match="max_q must be >= 0"):
        build_model("auto_arima", {"max_q": -1}).fit(frame(np.arange(30.0)))
