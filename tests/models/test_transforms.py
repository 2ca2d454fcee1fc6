"""Target transforms (exact inverses) and the ForecastPipeline around a model."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.series import DATE, SERIES
from forecastflow.models import (
    Ets,
    Forecast,
    GradientBoosting,
    ModelError,
    Naive,
    PerColumn,
    PerSeries,
    Sarimax,
    SeasonalNaive,
    Theta,
)
from forecastflow.models.transforms import TRANSFORMS, ForecastPipeline, Transform


def future(last: pd.Timestamp, h: int, freq: str = "MS") -> pd.DatetimeIndex:
    return pd.date_range(last, periods=h + 1, freq=freq, name=DATE)[1:]


def constant_forecast(index: pd.Index, columns: list[str], change: float, half: float) -> (
        Forecast):
    mean = pd.DataFrame(change, index=index, columns=columns)
    return Forecast(mean, mean - half, mean + half, 0.9)


@pytest.mark.parametrize("kind", TRANSFORMS)
def test_inverse_is_exact_on_single_series(kind, monthly, quarterly):
    for y in (monthly, quarterly[0]):
        t = Transform(kind)
        z = t.fit_transform(y)
        assert len(z) == len(y) - (1 if t.uses_diff else 0)
        back = t.inverse(z)
        pd.testing.assert_index_equal(back.index, y.index, check_names=False)
        np.testing.assert_allclose(back.to_numpy(), y.to_numpy(), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kind", TRANSFORMS)
def test_inverse_is_exact_on_panels(kind, panel):
    # series ids deliberately not in sorted order
    panel = pd.concat([panel.loc[["c"]], panel.loc[["a"]], panel.loc[["b"]]])
    t = Transform(kind)
    z = t.fit_transform(panel)
    if t.uses_diff:
        assert len(z) == len(panel) - 3  # one row less per series
        first = z.groupby(level=SERIES, sort=False).head(1).index.get_level_values(DATE)
        assert (first == panel.index.get_level_values(DATE)[1]).all()
    back = t.inverse(z)
    pd.testing.assert_index_equal(back.index, panel.index)
    np.testing.assert_allclose(back.to_numpy(), panel.to_numpy(), rtol=1e-12, atol=1e-9)


def test_diff_values_are_changes(monthly):
    z = Transform("diff").fit_transform(monthly)
    np.testing.assert_allclose(z["y"].to_numpy(), np.diff(monthly["y"].to_numpy()))
    lz = Transform("log-diff").fit_transform(monthly)
    np.testing.assert_allclose(lz["y"].to_numpy(), np.diff(np.log(monthly["y"].to_numpy())))


def test_panel_diff_does_not_cross_series(panel):
    z = Transform("diff").fit_transform(panel)
    for sid in ("a", "b", "c"):
        np.testing.assert_allclose(z.xs(sid, level=SERIES)["y"].to_numpy(),
                                   np.diff(panel.xs(sid, level=SERIES)["y"].to_numpy()))


@pytest.mark.parametrize("kind", ["log", "log-diff"])
@pytest.mark.parametrize("bad", [0.0, -3.0])
def test_log_rejects_non_positive(kind, bad, monthly):
    y = monthly.copy()
    y.iloc[5, 0] = bad
    with pytest.raises(ModelError, match="positive"):
        Transform(kind).fit_transform(y)


def test_unknown_transform_rejected():
    with pytest.raises(ModelError, match="unknown transform"):
        Transform("sqrt")


def test_inverse_forecast_of_constant_change():
    index = pd.date_range("2020-01-01", periods=5, freq="MS", name=DATE)
    y = pd.DataFrame({"y": [1.0, 3.0, 5.0, 7.0, 10.0]}, index=index)
    t = Transform("diff")
    t.fit_transform(y)
    fc = t.inverse_forecast(constant_forecast(future(index[-1], 4), ["y"], 2.0, 1.0))
    np.testing.assert_allclose(fc.mean["y"], [12.0, 14.0, 16.0, 18.0])
    # half-widths add in quadrature: sqrt(h) * 1
    np.testing.assert_allclose(fc.upper["y"] - fc.mean["y"], np.sqrt(np.arange(1, 5)))
    np.testing.assert_allclose(fc.mean["y"] - fc.lower["y"], np.sqrt(np.arange(1, 5)))
    assert fc.coverage == 0.9


def test_inverse_forecast_log_and_log_diff():
    index = pd.date_range("2020-01-01", periods=3, freq="MS", name=DATE)
    y = pd.DataFrame({"y": [50.0, 80.0, 100.0]}, index=index)
    t = Transform("log-diff")
    t.fit_transform(y)
    fc = t.inverse_forecast(constant_forecast(future(index[-1], 3), ["y"], np.log(1.1), 0.05))
    np.testing.assert_allclose(fc.mean["y"], 100.0 * 1.1 ** np.arange(1, 4))
    np.testing.assert_allclose(fc.upper["y"] / fc.mean["y"],
                               np.exp(0.05 * np.sqrt(np.arange(1, 4))))
    t = Transform("log")
    t.fit_transform(y)
    fc = t.inverse_forecast(constant_forecast(future(index[-1], 2), ["y"], np.log(7.0), 0.1))
    np.testing.assert_allclose(fc.mean["y"], 7.0)
    np.testing.assert_allclose(fc.lower["y"], 7.0 * np.exp(-0.1))


def test_inverse_forecast_on_panel_uses_each_series_last_level(panel):
    t = Transform("diff")
    t.fit_transform(panel)
    idx = pd.MultiIndex.from_tuples(
        [(sid, d) for sid in ("a", "b", "c") for d in future(pd.Timestamp("2018-12-01"), 2)],
        names=[SERIES, DATE])
    fc = t.inverse_forecast(constant_forecast(idx, ["y"], 1.0, 0.5))
    for sid in ("a", "b", "c"):
        last = panel.xs(sid, level=SERIES)["y"].iloc[-1]
        np.testing.assert_allclose(fc.mean.xs(sid, level=SERIES)["y"], last + np.array([1, 2]))


@pytest.mark.parametrize("kind", TRANSFORMS)
def test_bounds_stay_ordered_after_inverse(kind, monthly):
    model = ForecastPipeline(Sarimax(order=(1, 0, 0), trend="c", maxiter=20), kind)
    fc = model.fit(monthly).predict(12)
    assert (fc.lower.to_numpy() <= fc.mean.to_numpy()).all()
    assert (fc.mean.to_numpy() <= fc.upper.to_numpy()).all()
    assert np.isfinite(fc.mean.to_numpy()).all()
    if "log" in kind:
        assert (fc.lower.to_numpy() > 0).all()


def test_transform_exog_drops_first_period(quarterly, panel):
    _, X = quarterly
    assert Transform("log").transform_exog(X) is X
    assert Transform("diff").transform_exog(None) is None
    pd.testing.assert_frame_equal(Transform("diff").transform_exog(X), X.iloc[1:])
    xp = pd.DataFrame({"x": np.arange(len(panel), dtype=float)}, index=panel.index)
    out = Transform("log-diff").transform_exog(xp)
    assert len(out) == len(xp) - 3
    assert out.groupby(level=SERIES).size().tolist() == [47, 47, 47]


def test_pipeline_wraps_univariate_model_per_column(quarterly):
    y, _ = quarterly
    pipe = ForecastPipeline(Sarimax(order=(1, 0, 0), trend="c", maxiter=20), "log-diff")
    fc = pipe.fit(y).predict(4)
    assert isinstance(pipe.model_, PerColumn)
    assert sorted(pipe.model_.models_) == ["cons", "gdp", "inv"]
    assert list(fc.mean.columns) == ["gdp", "cons", "inv"]
    pd.testing.assert_index_equal(fc.mean.index, future(y.index[-1], 4, "QS"),
                                  check_names=False, exact=False)
    assert (fc.mean.to_numpy() > 0).all()
    # levels continue from the last observation (small quarterly changes)
    np.testing.assert_allclose(fc.mean.iloc[0], y.iloc[-1], rtol=0.1)
    assert "converged" in pipe.fit_info_
    restored = pickle.loads(pickle.dumps(pipe))
    for name in ("mean", "lower", "upper"):
        pd.testing.assert_frame_equal(getattr(restored.predict(4), name), getattr(fc, name))
    with pytest.raises(ModelError, match="fit"):
        PerColumn(Sarimax()).predict(2)
    with pytest.raises(ModelError, match="fit"):
        PerSeries(Naive()).predict(2)


def test_pipeline_with_none_equals_bare_model(monthly):
    bare = SeasonalNaive(season_length=12).fit(monthly).predict(6)
    piped = ForecastPipeline(SeasonalNaive(season_length=12)).fit(monthly).predict(6)
    for name in ("mean", "lower", "upper"):
        pd.testing.assert_frame_equal(getattr(piped, name), getattr(bare, name))


def test_pipeline_diff_with_naive_repeats_last_change(monthly):
    fc = ForecastPipeline(Naive(), "diff").fit(monthly).predict(3)
    last, change = monthly["y"].iloc[-1], monthly["y"].diff().iloc[-1]
    np.testing.assert_allclose(fc.mean["y"], last + change * np.arange(1, 4))


def test_pipeline_on_panel_adapts_per_series(panel):
    pipe = ForecastPipeline(Theta(), "log")
    fc = pipe.fit(panel).predict(2)
    assert isinstance(pipe.model_, Theta)  # panel-native: no wrapper
    assert isinstance(ForecastPipeline(Ets(), "log").fit(panel).model_, PerSeries)
    pipe = ForecastPipeline(Naive(), "log")
    fc = pipe.fit(panel).predict(2)
    assert fc.mean.index.names == [SERIES, DATE]
    for sid in ("a", "b", "c"):
        np.testing.assert_allclose(fc.mean.xs(sid, level=SERIES)["y"],
                                   panel.xs(sid, level=SERIES)["y"].iloc[-1])


def test_pipeline_global_boosting_on_panel_with_diff(panel):
    pipe = ForecastPipeline(GradientBoosting(season_length=12, max_iter=10), "log-diff")
    fc = pipe.fit(panel).predict(3)
    assert isinstance(pipe.model_, GradientBoosting)  # global: no wrapper
    assert len(fc.mean) == 9
    assert (fc.lower.to_numpy() <= fc.upper.to_numpy()).all()


def test_pipeline_exog_with_diff(quarterly, future_x):
    y, X = quarterly
    pipe = ForecastPipeline(Sarimax(order=(1, 0, 0), maxiter=20), "diff")
    pipe.fit(y[["gdp"]], X)
    assert pipe.exog_ == ["x"]
    with pytest.raises(ModelError, match="exog"):
        pipe.predict(3)
    fc = pipe.predict(3, future_x(3))
    assert len(fc.mean) == 3
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_allclose(restored.predict(3, future_x(3)).mean, fc.mean)


def test_pipeline_errors_before_fit_and_bad_horizon(monthly):
    pipe = ForecastPipeline(Naive(), "diff")
    with pytest.raises(ModelError, match="fit"):
        pipe.predict(3)
    pipe.fit(monthly)
    for bad in (0, -2, 1.5):
        with pytest.raises(ModelError, match="horizon"):
            pipe.predict(bad)
    clone = pipe.clone()
    assert clone.get_params()["transform"] == "diff"
    assert not any(k.endswith("_") for k in vars(clone))


def test_hold_last_exog_single_and_panel():
    from forecastflow.models.transforms import hold_last_exog

    index = pd.date_range("2020-01-01", periods=4, freq="MS", name=DATE)
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}, index=index)
    future = hold_last_exog(X, "MS", 3)
    assert list(future.index) == list(pd.date_range("2020-05-01", periods=3, freq="MS"))
    assert (future["x"] == 4.0).all()
    panel = pd.concat({"a": X, "b": X * 10}, names=[SERIES, DATE])
    future = hold_last_exog(panel, "MS", 2)
    assert future.loc["a", "x"].tolist() == [4.0, 4.0]
    assert future.loc["b", "x"].tolist() == [40.0, 40.0]
    assert hold_last_exog(None, "MS", 2) is None
