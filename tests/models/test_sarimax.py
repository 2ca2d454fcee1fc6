"""SARIMAX: orders, exog, compact persisted state and fit diagnostics."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from forecastflow import storage
from forecastflow.data.series import DATE, SERIES
from forecastflow.models import FitError, ModelError, PerSeries, Sarimax, adapt


def ar1(n: int = 150, phi: float = 0.7, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    e = rng.normal(0, 1, n)
    v = np.zeros(n)
    for t in range(1, n):
        v[t] = phi * v[t - 1] + e[t]
    index = pd.date_range("2000-01-01", periods=n, freq="MS", name=DATE)
    return pd.DataFrame({"y": v}, index=index)


def test_orders_resolve_season_length():
    assert Sarimax()._orders() == ((1, 0, 0), (0, 0, 0, 0))
    model = Sarimax(order=[2, 1, 0], seasonal_order=[1, 0, 0], season_length=12)
    assert model._orders() == ((2, 1, 0), (1, 0, 0, 12))
    explicit = Sarimax(seasonal_order=(0, 1, 1, 4), season_length=12)
    assert explicit._orders()[1] == (0, 1, 1, 4)
    none_m = Sarimax(seasonal_order=(1, 0, 0, None), season_length=7)
    assert none_m._orders()[1] == (1, 0, 0, 7)
    # no usable season: seasonal part dropped
    assert Sarimax(seasonal_order=(1, 0, 0))._orders()[1] == (0, 0, 0, 0)
    assert Sarimax(seasonal_order=(0, 0, 0), season_length=12)._orders()[1] == (0, 0, 0, 0)


def test_bad_order_and_trend_raise_model_error(monthly):
    with pytest.raises(ModelError, match="order"):
        Sarimax(order=(1, 0)).fit(monthly)
    with pytest.raises(ModelError, match="trend"):
        Sarimax(trend="quadratic").fit(monthly)


def test_constant_becomes_drift_after_differencing(monthly):
    model = Sarimax(order=(0, 1, 0), trend="c", maxiter=20).fit(monthly)
    assert model.results_.model.trend == "c"  # on the differences: a drift
    slope = np.diff(model.predict(24).mean["y"].to_numpy())
    np.testing.assert_allclose(slope, slope[0])  # linear levels, not a quadratic
    assert slope[0] == pytest.approx(np.diff(monthly["y"].to_numpy()).mean(), rel=0.05)
    model = Sarimax(order=(0, 1, 0), seasonal_order=(0, 1, 0), season_length=12, trend="c",
                    maxiter=20).fit(monthly)
    assert model.results_.model.trend == "n"


def test_recovers_ar1_coefficient_and_intervals_widen():
    model = Sarimax(order=(1, 0, 0), trend="n").fit(ar1())
    assert model.params_[0] == pytest.approx(0.7, abs=0.12)
    fc = model.predict(8)
    width = (fc.upper - fc.lower)["y"].to_numpy()
    assert (np.diff(width) >= -1e-9).all()
    # mean reverts towards zero geometrically
    assert abs(fc.mean["y"].iloc[-1]) < abs(fc.mean["y"].iloc[0]) + 1e-9


def test_fit_info_reports_convergence(monthly):
    model = Sarimax(order=(1, 0, 0), trend="c", maxiter=30).fit(monthly)
    info = model.fit_info_
    assert {"converged", "warnings", "iterations", "aic"} <= set(info)
    assert isinstance(info["converged"], bool)
    assert isinstance(info["warnings"], list)
    assert model.fit_seconds_ >= 0
    starved = Sarimax(order=(2, 0, 1), trend="c", maxiter=1).fit(monthly)
    assert starved.fit_info_["converged"] is False
    assert any("Convergence" in w for w in starved.fit_info_["warnings"])
    assert np.isfinite(starved.predict(3).mean.to_numpy()).all()


def test_exog_drives_the_forecast():
    rng = np.random.default_rng(5)
    n = 80
    index = pd.date_range("2010-01-01", periods=n, freq="MS", name=DATE)
    x = rng.normal(0, 1, n)
    y = pd.DataFrame({"y": 3.0 * x + rng.normal(0, 0.1, n)}, index=index)
    X = pd.DataFrame({"x": x}, index=index)
    model = Sarimax(order=(0, 0, 0), trend="n").fit(y, X)
    future = pd.date_range(index[-1], periods=5, freq="MS", name=DATE)[1:]
    xf = pd.DataFrame({"x": [1.0, -2.0, 0.5, 3.0]}, index=future)
    np.testing.assert_allclose(model.predict(4, xf).mean["y"], 3.0 * xf["x"], atol=0.1)


def test_compact_state_is_small_and_rebuilt_on_load(monthly, tmp_path):
    model = Sarimax(order=(1, 0, 0), seasonal_order=(1, 0, 0), season_length=12,
                    trend="c").fit(monthly)
    blob = pickle.dumps(model)
    full = len(pickle.dumps(model.results_))
    assert len(blob) < 100_000
    assert full > 20 * len(blob)
    restored = pickle.loads(blob)
    assert "results_" in vars(restored)  # rebuilt by one filter pass
    np.testing.assert_array_equal(restored.params_, model.params_)
    before, after = model.predict(12), restored.predict(12)
    for name in ("mean", "lower", "upper"):
        np.testing.assert_allclose(getattr(after, name), getattr(before, name), rtol=1e-10)
    path = storage.write_model(model, tmp_path / "sarimax.pkl")
    assert path.stat().st_size < 100_000
    np.testing.assert_allclose(storage.read_model(path).predict(12).mean, before.mean)


def test_unfitted_model_pickles_without_refilter():
    model = pickle.loads(pickle.dumps(Sarimax(order=(2, 0, 0))))
    assert model.get_params()["order"] == (2, 0, 0)
    assert not hasattr(model, "results_")


def test_compact_state_with_exog(quarterly, future_x, tmp_path):
    y, X = quarterly
    model = Sarimax(order=(1, 0, 0), trend="c").fit(y[["gdp"]], X)
    blob = pickle.dumps(model)
    assert len(blob) < 100_000
    before = model.predict(4, future_x(4))
    after = pickle.loads(blob).predict(4, future_x(4))
    np.testing.assert_allclose(after.mean, before.mean, rtol=1e-10)
    np.testing.assert_allclose(after.lower, before.lower, rtol=1e-10)
    np.testing.assert_allclose(after.upper, before.upper, rtol=1e-10)
    # predictions really depend on the future exog
    other = model.predict(4, future_x(4) * -5.0)
    assert not np.allclose(other.mean, before.mean)


def test_non_finite_data_is_a_fit_error():
    index = pd.date_range("2000-01-01", periods=30, freq="MS", name=DATE)
    y = pd.DataFrame({"y": np.r_[np.ones(29), np.inf]}, index=index)
    with pytest.raises(FitError, match="sarimax"):
        Sarimax(order=(1, 0, 0)).fit(y)


def test_per_series_sarimax_with_panel_exog(panel):
    x = pd.DataFrame({"x": np.sin(np.arange(len(panel)) / 5.0)}, index=panel.index)
    model = adapt(Sarimax(order=(1, 0, 0), trend="c", maxiter=20), panel)
    assert isinstance(model, PerSeries)
    model.fit(panel, x)
    assert sorted(model.models_) == ["a", "b", "c"]
    assert all(m.exog_ == ["x"] for m in model.models_.values())
    index = model.forecast_index(3)
    fc = model.predict(3, pd.DataFrame({"x": 0.5}, index=index))
    assert fc.mean.index.names == [SERIES, DATE]
    assert len(fc.mean) == 9
    assert "converged" in model.fit_info_
    with pytest.raises(ModelError, match="'b'"):
        model.predict(3, pd.DataFrame({"x": 0.5}, index=index[index.get_level_values(SERIES)
                                                              != "b"]))
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(restored.predict(3, pd.DataFrame({"x": 0.5}, index=index)).mean,
                               fc.mean)
