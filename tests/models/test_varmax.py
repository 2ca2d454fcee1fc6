"""VARMAX: several targets with exog, standardization, non-convergence recorded not raised."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from forecastflow import storage
from forecastflow.models import ModelError, Varmax


def test_needs_at_least_two_targets(quarterly):
    y, _ = quarterly
    with pytest.raises(ModelError, match="2 target"):
        Varmax().fit(y[["gdp"]])


@pytest.mark.parametrize("params", [{"order": (0, 0)}, {"trend": "x"}])
def test_bad_hyperparameters_raise_model_error(quarterly, params):
    with pytest.raises(ModelError):
        Varmax(**params).fit(quarterly[0])


def test_non_convergence_is_recorded_not_raised(quarterly, future_x):
    y, X = quarterly
    model = Varmax(order=(1, 0), maxiter=1).fit(y, X)
    assert model.fit_info_["converged"] is False
    assert any(w.startswith("ConvergenceWarning") for w in model.fit_info_["warnings"])
    fc = model.predict(3, future_x(3))
    assert np.isfinite(fc.mean.to_numpy()).all()


def test_converges_with_enough_iterations(quarterly):
    changes = quarterly[0].diff().dropna()  # stationary, as after the diff transform
    model = Varmax(order=(1, 0), maxiter=200).fit(changes)
    assert model.fit_info_["converged"] is True
    assert {"converged", "warnings", "iterations", "aic"} <= set(model.fit_info_)


def test_standardization_is_mapped_back_exactly(quarterly):
    y = quarterly[0].diff().dropna()  # stationary: the optimizer converges to one optimum
    base = Varmax(order=(1, 0), maxiter=200).fit(y).predict(4)
    shifted = Varmax(order=(1, 0), maxiter=200).fit(y * 1000.0 + 7.0).predict(4)
    for name in ("mean", "lower", "upper"):
        np.testing.assert_allclose(getattr(shifted, name), getattr(base, name) * 1000.0 + 7.0,
                                   rtol=1e-5)


def test_scaled_state_is_stored(quarterly):
    y, X = quarterly
    model = Varmax(order=(1, 0), maxiter=20).fit(y, X)
    np.testing.assert_allclose(model.y_mean_, y.mean().to_numpy())
    np.testing.assert_allclose(model.y_std_, y.std(ddof=0).to_numpy())
    np.testing.assert_allclose(model.endog_.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(model.x_mean_, X.mean().to_numpy())
    unscaled = Varmax(order=(1, 0), scale=False, maxiter=20).fit(y)
    assert not hasattr(unscaled, "y_mean_")
    np.testing.assert_allclose(unscaled.endog_, y.to_numpy())


def test_future_exog_matters_and_is_scaled_like_training(quarterly, future_x):
    y, X = quarterly
    y, X = y.diff().iloc[1:], X.iloc[1:]
    model = Varmax(order=(1, 0), maxiter=200).fit(y, X)
    a = model.predict(4, future_x(4)).mean
    b = model.predict(4, future_x(4) + 3.0).mean
    assert not np.allclose(a, b)
    # shifting training and future exog alike leaves forecasts unchanged (standardized)
    shifted = Varmax(order=(1, 0), maxiter=200).fit(y, X + 100.0)
    np.testing.assert_allclose(shifted.predict(4, future_x(4) + 100.0).mean, a, rtol=1e-5)


def test_missing_future_exog_names_the_column(quarterly, future_x):
    y, X = quarterly
    model = Varmax(order=(1, 0), maxiter=20).fit(y, X)
    with pytest.raises(ModelError, match=r"\['x'\]"):
        model.predict(2, future_x(2).rename(columns={"x": "rate"}))
    with pytest.raises(ModelError, match="no rows for 1 forecast date"):
        model.predict(2, future_x(1))


def test_save_reload_with_exog(quarterly, future_x, tmp_path):
    y, X = quarterly
    model = Varmax(order=(1, 0), maxiter=30).fit(y, X)
    before = model.predict(4, future_x(4))
    blob = pickle.dumps(model)
    assert len(blob) < 100_000
    for restored in (pickle.loads(blob),
                     storage.read_model(storage.write_model(model, tmp_path / "v.pkl"))):
        after = restored.predict(4, future_x(4))
        for name in ("mean", "lower", "upper"):
            np.testing.assert_allclose(getattr(after, name), getattr(before, name),
                                       rtol=1e-9)
        assert list(after.mean.columns) == ["gdp", "cons", "inv"]
