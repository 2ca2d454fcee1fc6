"""The contract every family in ``FAMILIES`` shares (parametrized over all of them)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from forecastflow import storage
from forecastflow.data.series import DATE, SERIES
from forecastflow.models import (
    FAMILIES,
    Forecast,
    Forecaster,
    ModelError,
    PerColumn,
    PerSeries,
    adapt,
    build_model,
)

HORIZON = 5


def fitted_attributes(model: Forecaster) -> list[str]:
    return sorted(k for k in vars(model) if k.endswith("_"))


def assert_same_forecast(a: Forecast, b: Forecast) -> None:
    for name in ("mean", "lower", "upper"):
        fa, fb = getattr(a, name), getattr(b, name)
        pd.testing.assert_index_equal(fa.index, fb.index)
        assert list(fa.columns) == list(fb.columns)
        np.testing.assert_allclose(fa.to_numpy(), fb.to_numpy(), rtol=1e-9, atol=1e-9)


def test_families_registry_names_match_classes():
    assert {"naive", "seasonal_naive", "drift", "sarimax", "varmax",
            "gradient_boosting"} <= set(FAMILIES)
    for name, cls in FAMILIES.items():
        assert cls.family == name
        assert issubclass(cls, Forecaster)


def test_constructor_stores_only_hyperparameters(family, family_case):
    model, _ = family_case(family)
    assert fitted_attributes(model) == []
    assert set(vars(model)) == set(type(model).param_names())
    params = model.get_params()
    assert set(params) == set(type(model).param_names())
    rebuilt = type(model)(**params)
    assert rebuilt.get_params() == params
    assert repr(rebuilt) == repr(model)


def test_clone_is_unfitted_copy_with_same_params(family, family_case):
    model, y = family_case(family)
    model.fit(y)
    assert fitted_attributes(model), "fit should set attributes ending in '_'"
    copy = model.clone()
    assert type(copy) is type(model)
    assert copy is not model
    assert copy.get_params() == model.get_params()
    assert fitted_attributes(copy) == []
    with pytest.raises(ModelError):
        copy.predict(HORIZON)


def test_fit_returns_self(family, family_case):
    model, y = family_case(family)
    assert model.fit(y) is model


def test_predict_returns_forecast_on_future_index(family, family_case):
    model, y = family_case(family)
    fc = model.fit(y).predict(HORIZON)
    assert isinstance(fc, Forecast)
    assert fc.horizon == HORIZON
    assert fc.coverage == model.coverage
    expected = pd.date_range(y.index[-1], periods=HORIZON + 1, freq=y.index.freq)[1:]
    for frame in (fc.mean, fc.lower, fc.upper):
        assert frame.shape == (HORIZON, y.shape[1])
        assert isinstance(frame.index, pd.DatetimeIndex)
        assert frame.index.name == DATE
        assert frame.index.freqstr == y.index.freqstr
        pd.testing.assert_index_equal(frame.index, expected, check_names=False)
        assert list(frame.columns) == list(y.columns)
        assert np.isfinite(frame.to_numpy()).all()


def test_intervals_are_ordered_and_nonempty(family, family_case):
    model, y = family_case(family)
    fc = model.fit(y).predict(HORIZON)
    assert (fc.lower.to_numpy() <= fc.mean.to_numpy()).all()
    assert (fc.mean.to_numpy() <= fc.upper.to_numpy()).all()
    assert (fc.upper.to_numpy() - fc.lower.to_numpy() > 0).all()


def test_higher_coverage_gives_wider_intervals(family, family_case):
    narrow_model, y = family_case(family, coverage=0.5)
    wide_model, _ = family_case(family, coverage=0.95)
    narrow = narrow_model.fit(y).predict(HORIZON)
    wide = wide_model.fit(y).predict(HORIZON)
    narrow_width = (narrow.upper - narrow.lower).to_numpy()
    wide_width = (wide.upper - wide.lower).to_numpy()
    assert (wide_width >= narrow_width - 1e-9).all()
    assert wide_width.sum() > narrow_width.sum()


def test_predict_before_fit_raises(family, family_case):
    model, _ = family_case(family)
    with pytest.raises(ModelError, match="fit"):
        model.predict(HORIZON)


@pytest.mark.parametrize("horizon", [0, -1, 1.5, "3"])
def test_bad_horizon_raises(family, family_case, horizon):
    model, y = family_case(family)
    model.fit(y)
    with pytest.raises(ModelError, match="horizon"):
        model.predict(horizon)


def test_numpy_integer_horizon_is_accepted(family, family_case):
    model, y = family_case(family)
    assert len(model.fit(y).predict(np.int64(3)).mean) == 3


def test_capability_flags_declared(family, family_case):
    model, _ = family_case(family)
    caps = model.capabilities
    assert set(caps) >= {"multivariate", "exogenous", "panel", "intervals"}
    assert all(isinstance(v, bool) for v in caps.values())
    assert caps["intervals"] is True


def test_missing_values_rejected(family, family_case):
    model, y = family_case(family)
    y = y.copy()
    y.iloc[3, 0] = np.nan
    with pytest.raises(ModelError, match="missing"):
        model.fit(y)


def test_invalid_coverage_rejected(family, family_case):
    model, y = family_case(family, coverage=1.0)
    with pytest.raises(ModelError, match="coverage"):
        model.fit(y)


def test_univariate_families_reject_several_targets(family, family_case, quarterly):
    model, _ = family_case(family)
    if model.capabilities["multivariate"]:
        pytest.skip("multivariate family")
    with pytest.raises(ModelError, match="univariate"):
        model.fit(quarterly[0])
    # ...but adapt() wraps them to handle every target
    wrapped = adapt(model, quarterly[0])
    assert isinstance(wrapped, PerColumn)
    fc = wrapped.fit(quarterly[0]).predict(3)
    assert list(fc.mean.columns) == list(quarterly[0].columns)


def test_single_series_families_reject_panels(family, family_case, panel):
    model, _ = family_case(family)
    if model.capabilities["panel"] or family in {"varmax"}:
        pytest.skip("panel-capable family (or one needing several targets)")
    with pytest.raises(ModelError, match="PerSeries"):
        model.fit(panel)
    wrapped = adapt(model, panel)
    assert isinstance(wrapped, PerSeries)
    fc = wrapped.fit(panel).predict(3)
    assert isinstance(fc.mean.index, pd.MultiIndex)
    assert fc.mean.index.names == [SERIES, DATE]
    assert sorted(fc.mean.index.get_level_values(SERIES).unique()) == ["a", "b", "c"]


def test_models_without_exog_ignore_it(family, family_case, monthly):
    model, y = family_case(family)
    if model.capabilities["exogenous"]:
        pytest.skip("family uses exog")
    X = pd.DataFrame({"x": np.arange(len(y), dtype=float)}, index=y.index)
    model.fit(y, X)
    assert model.exog_ is None
    assert len(model.predict(3).mean) == 3


def _exog_case(family, family_case, quarterly):
    model, _ = family_case(family)
    y, X = quarterly
    if family not in {"varmax"}:
        y = y[["gdp"]]
    return model, y, X


def test_exog_models_require_future_exog(family, family_case, quarterly, future_x):
    model, y, X = _exog_case(family, family_case, quarterly)
    if not model.capabilities["exogenous"]:
        pytest.skip("family ignores exog")
    model.fit(y, X)
    assert model.exog_ == ["x"]
    with pytest.raises(ModelError, match="exog"):
        model.predict(4)
    with pytest.raises(ModelError, match="'x'"):
        model.predict(4, future_x(4).rename(columns={"x": "other"}))
    with pytest.raises(ModelError, match="row"):
        model.predict(4, future_x(2))
    nan_x = future_x(4)
    nan_x.iloc[1, 0] = np.nan
    with pytest.raises(ModelError, match="missing"):
        model.predict(4, nan_x)
    fc = model.predict(4, future_x(4))
    assert len(fc.mean) == 4
    # extra future rows are fine: the first ``horizon`` are used
    assert_same_forecast(fc, model.predict(4, future_x(6)))
    # dated rows are matched on the forecast dates: history rows in front are skipped ...
    with_history = pd.concat([X.iloc[-3:], future_x(4)])
    assert_same_forecast(fc, model.predict(4, with_history))
    # ... and undated rows are taken in order
    assert_same_forecast(fc, model.predict(4, future_x(4).reset_index(drop=True)))


def test_exog_index_must_match_training_index(family, family_case, quarterly):
    model, y, X = _exog_case(family, family_case, quarterly)
    if not model.capabilities["exogenous"]:
        pytest.skip("family ignores exog")
    with pytest.raises(ModelError, match="index"):
        model.fit(y, X.iloc[1:])


def test_pickle_round_trip_gives_identical_predictions(family, family_case, tmp_path):
    model, y = family_case(family)
    model.fit(y)
    before = model.predict(HORIZON)
    restored = pickle.loads(pickle.dumps(model))
    assert_same_forecast(before, restored.predict(HORIZON))
    path = storage.write_model(model, tmp_path / "models" / f"{family}.pkl")
    assert path.exists()
    assert_same_forecast(before, storage.read_model(path).predict(HORIZON))
    assert restored.get_params() == model.get_params()


def test_pickle_round_trip_with_exog(family, family_case, quarterly, future_x, tmp_path):
    model, y, X = _exog_case(family, family_case, quarterly)
    if not model.capabilities["exogenous"]:
        pytest.skip("family ignores exog")
    model.fit(y, X)
    before = model.predict(4, future_x(4))
    restored = pickle.loads(pickle.dumps(model))
    assert_same_forecast(before, restored.predict(4, future_x(4)))
    path = storage.write_model(model, tmp_path / f"{family}-exog.pkl")
    assert_same_forecast(before, storage.read_model(path).predict(4, future_x(4)))


def test_build_model_rejects_unknown_family_and_params(family):
    with pytest.raises(ModelError, match="unknown model family"):
        build_model("nope")
    with pytest.raises(ModelError, match="no parameter"):
        build_model(family, {"not_a_param": 1})
    with pytest.raises(ModelError, match="coverage"):
        build_model(family, {"coverage": 0.5})
    model = build_model(family, coverage=0.8, season_length=7)
    assert model.coverage == 0.8
    if "season_length" in model.param_names():
        assert model.season_length == 7


def test_deterministic_refit(family, family_case):
    model, y = family_case(family)
    first = model.fit(y).predict(HORIZON)
    second = model.clone().fit(y).predict(HORIZON)
    assert_same_forecast(first, second)


def test_to_long_has_one_row_per_target_and_step(family, family_case):
    model, y = family_case(family)
    long = model.fit(y).predict(HORIZON).to_long()
    assert len(long) == HORIZON * y.shape[1]
    assert {"target", DATE, "step", "forecast", "lower", "upper"} <= set(long.columns)
    assert sorted(long["step"].unique()) == list(range(1, HORIZON + 1))
    assert set(long["target"]) == set(y.columns)
