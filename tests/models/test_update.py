"""``update``: a fitted model's state moves to the end of newer data with its estimated
parameters unchanged, so batch forecasts start from the latest data without refitting."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.series import DATE, SERIES
from forecastflow.models import GradientBoosting, ModelError, Naive, Sarimax, SeasonalNaive
from forecastflow.models.transforms import ForecastPipeline
from tests.conftest import FAST_PARAMS, MULTI_TARGET_FAMILIES, make_panel

NEW = 6  # periods that arrive after the fit


def split(y: pd.DataFrame, X: pd.DataFrame | None = None, new: int = NEW):
    if isinstance(y.index, pd.MultiIndex):
        keep = y.groupby(level=SERIES, sort=False).cumcount(ascending=False) >= new
        return y[keep.to_numpy()], None if X is None else X[keep.to_numpy()]
    return y.iloc[:-new], None if X is None else X.iloc[:-new]


@pytest.mark.parametrize("transform", ["none", "diff", "log"])
def test_update_moves_the_origin_and_keeps_the_parameters(family, family_case, transform):
    model, y = family_case(family)
    if transform == "log":
        y = y - y.min() + 10.0
    old_y, _ = split(y)
    fitted = ForecastPipeline(model, transform).fit(old_y)
    before = fitted.predict(4)
    moved = fitted.update(y)
    out = moved.predict(4)
    assert out.mean.index[0] > y.index[-1] and out.mean.index[0] == before.mean.index[0] + (
        NEW * before.mean.index.freq)
    assert np.isfinite(out.mean.to_numpy()).all()
    assert (out.lower.to_numpy() <= out.upper.to_numpy()).all()
    # The fitted model is untouched, and updating with the data it was fitted on is a no-op.
    pd.testing.assert_frame_equal(fitted.predict(4).mean, before.mean)
    same = fitted.update(old_y).predict(4)
    for part in ("mean", "lower", "upper"):
        pd.testing.assert_frame_equal(getattr(same, part), getattr(before, part))
    # Estimated parameters did not move.
    inner_old, inner_new = fitted.model_, moved.model_
    if hasattr(inner_old, "models_"):  # PerColumn
        inner_old, inner_new = (next(iter(m.models_.values())) for m in (inner_old, inner_new))
    for name in ("params_", "sigma_", "slope_", "widths_", "y_mean_"):
        if hasattr(inner_old, name):
            np.testing.assert_array_equal(getattr(inner_new, name), getattr(inner_old, name))
    if hasattr(inner_old, "regressor_"):
        assert inner_new.regressor_ is inner_old.regressor_
    # The moved state survives a pickle round trip (the registry stores models pickled).
    again = pickle.loads(pickle.dumps(moved)).predict(4)
    pd.testing.assert_frame_equal(again.mean, out.mean)


def test_sarimax_update_matches_statsmodels_append(monthly):
    old_y, _ = split(monthly)
    fitted = Sarimax(**FAST_PARAMS["sarimax"]).fit(old_y)
    expected = fitted.results_.append(monthly["y"].to_numpy()[-NEW:]).get_forecast(5)
    got = fitted.update(monthly).predict(5)
    np.testing.assert_allclose(got.mean["y"].to_numpy(), expected.predicted_mean, rtol=1e-10)


def test_baseline_update_forecasts_from_the_latest_values(monthly):
    old_y, _ = split(monthly)
    assert Naive().fit(old_y).update(monthly).predict(2).mean["y"].tolist() == [
        monthly["y"].iloc[-1]] * 2
    snaive = SeasonalNaive(season_length=12).fit(old_y).update(monthly).predict(12)
    np.testing.assert_array_equal(snaive.mean["y"].to_numpy(), monthly["y"].to_numpy()[-12:])


def test_exog_models_update_with_the_new_exog(quarterly):
    y, X = quarterly
    old_y, old_X = split(y, X)
    for family in ("varmax", "sarimax", "gradient_boosting"):
        from forecastflow.models import build_model

        target = y if family in MULTI_TARGET_FAMILIES else y[["gdp"]]
        model = ForecastPipeline(build_model(family, FAST_PARAMS[family], season_length=4))
        fitted = model.fit(target.loc[old_y.index], old_X)
        moved = fitted.update(target, X)
        future = pd.DataFrame({"x": [0.1, 0.2]},
                              index=pd.date_range(y.index[-1], periods=3, freq="QS")[1:])
        assert moved.predict(2, future).mean.index[0] == future.index[0], family
        with pytest.raises(ModelError, match="exogenous"):
            fitted.update(target)


def test_panel_update_and_refusals():
    panel = make_panel()
    old, _ = split(panel)
    for model in (GradientBoosting(**FAST_PARAMS["gradient_boosting"], season_length=12),
                  Sarimax(**FAST_PARAMS["sarimax"])):
        fitted = ForecastPipeline(model).fit(old)
        moved = fitted.update(panel)
        first = moved.predict(1).mean.index
        ends = panel.reset_index(level=DATE).groupby(SERIES)[DATE].max()
        assert all(d == ends[s] + pd.offsets.MonthBegin(1) for s, d in first)
        with pytest.raises(ModelError, match=r"new \['d'\]"):
            fitted.update(make_panel(("a", "b", "c", "d"), levels=(1.0, 2.0, 3.0, 4.0)))
        with pytest.raises(ModelError, match="end before the fitted data"):
            fitted.update(split(panel, new=NEW + 2)[0])
