"""Gradient boosting on lag features: no leakage, global panels, intervals, differencing."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.series import DATE, SERIES
from forecastflow.models import FitError, GradientBoosting, ModelError, PerSeries, adapt
from forecastflow.models.boosting import lag_features, tail_features

FAST = {"max_iter": 15, "min_samples_leaf": 5}

LAGS = np.array([1, 2, 5])
WINDOWS = np.array([3, 6])


def test_lag_features_match_hand_computation():
    u = np.arange(10, dtype=float) ** 2
    rows = np.array([6, 9])
    feats = lag_features(u, rows, LAGS, WINDOWS)
    expected = [[u[t - 1], u[t - 2], u[t - 5], u[t - 3:t].mean(), u[t - 6:t].mean()]
                for t in rows]
    np.testing.assert_allclose(feats, expected)


@pytest.mark.parametrize("garbage", [np.nan, 1e12, -7.0])
def test_lag_features_do_not_leak_the_future(garbage):
    rng = np.random.default_rng(0)
    u = rng.normal(size=40)
    u[0] = np.nan  # the first difference is undefined
    rows = np.arange(7, 40)
    clean = lag_features(u, rows, LAGS, WINDOWS)
    for t in (7, 15, 39):
        spoiled = u.copy()
        spoiled[t:] = garbage
        feats = lag_features(spoiled, rows, LAGS, WINDOWS)
        upto = rows <= t
        np.testing.assert_array_equal(feats[upto], clean[upto])
        # and only those rows: later rows do see the change
        if t < 39:
            assert not np.array_equal(feats[~upto], clean[~upto], equal_nan=True)


def test_lag_features_of_truncated_history_agree():
    u = np.random.default_rng(1).normal(size=30)
    rows = np.arange(6, 20)
    full = lag_features(u, rows, LAGS, WINDOWS)
    for t in rows:
        appended = np.r_[u[:t], np.full(5, 99.0)]
        np.testing.assert_array_equal(lag_features(appended, np.array([t]), LAGS, WINDOWS)[0],
                                      full[rows == t][0])


def test_tail_features_equal_lag_features_at_next_row():
    u = np.random.default_rng(2).normal(size=25)
    need = int(max(LAGS.max(), WINDOWS.max()))
    for end in (need, 12, 25):
        history = u[:end]
        tail = tail_features(history[None, -need:], LAGS, WINDOWS)
        nxt = lag_features(history, np.array([end]), LAGS, WINDOWS)
        np.testing.assert_allclose(tail, nxt, rtol=1e-12, atol=1e-12)
    # several histories at once, one per row
    tails = np.stack([u[:10][-need:], u[:20][-need:]])
    np.testing.assert_allclose(tail_features(tails, LAGS, WINDOWS)[1],
                               lag_features(u[:20], np.array([20]), LAGS, WINDOWS)[0])


def test_settings_defaults_and_validation():
    lags, windows, m = GradientBoosting(season_length=12)._settings()
    np.testing.assert_array_equal(lags, np.arange(1, 13))
    np.testing.assert_array_equal(windows, [3, 12])
    assert m == 12
    lags, windows, _ = GradientBoosting(lags=[3, 1, 3], windows=[])._settings()
    np.testing.assert_array_equal(lags, [1, 3])
    assert len(windows) == 0
    np.testing.assert_array_equal(GradientBoosting(lags=2)._settings()[0], [1, 2])
    for bad in ({"differencing": -1}, {"differencing": "yearly"}, {"lags": 0},
                {"lags": [0, 1]}):
        with pytest.raises(ModelError):
            GradientBoosting(**bad)._settings()


def test_seasonal_differencing_learns_corrections_to_seasonal_naive(make_series):
    y = make_series(72)
    model = GradientBoosting(season_length=12, differencing="seasonal", **FAST)
    model._settings()
    assert model.d_ == 12
    fc = model.fit(y).predict(24)
    assert len(fc.mean) == 24
    assert (fc.lower.to_numpy() <= fc.upper.to_numpy()).all()
    # A purely periodic series is forecast almost exactly by its seasonal difference (zero).
    periodic = y.copy()
    periodic.iloc[:, 0] = np.tile(np.arange(1.0, 13.0), 6) * 10
    fc = GradientBoosting(season_length=12, differencing="seasonal", **FAST).fit(
        periodic).predict(12)
    np.testing.assert_allclose(fc.mean.to_numpy()[:, 0], periodic.to_numpy()[-12:, 0],
                               rtol=1e-6)


def test_too_short_series_is_a_fit_error(make_series):
    y = make_series(14)
    with pytest.raises(FitError):
        GradientBoosting(season_length=12, **FAST).fit(y)


def test_global_panel_model_predicts_every_series(panel):
    model = GradientBoosting(season_length=12, **FAST)
    assert model.capabilities["panel"] is True
    assert adapt(model, panel) is model
    fc = model.fit(panel).predict(6)
    assert fc.mean.index.names == [SERIES, DATE]
    assert list(fc.mean.index.get_level_values(SERIES).unique()) == ["a", "b", "c"]
    assert len(fc.mean) == 3 * 6
    assert fc.horizon == 6
    for sid in ("a", "b", "c"):
        last = panel.xs(sid, level=SERIES).index[-1]
        dates = fc.mean.xs(sid, level=SERIES).index
        expected = pd.date_range(last, periods=7, freq="MS")[1:]
        pd.testing.assert_index_equal(dates, expected, check_names=False, check_freq=False)
    # each series is forecast on its own scale
    means = fc.mean.groupby(level=SERIES)["y"].mean()
    assert means["a"] < means["b"] < means["c"]
    assert (fc.lower.to_numpy() <= fc.mean.to_numpy()).all()
    assert (fc.mean.to_numpy() <= fc.upper.to_numpy()).all()
    restored = pickle.loads(pickle.dumps(model)).predict(6)
    for name in ("mean", "lower", "upper"):
        pd.testing.assert_frame_equal(getattr(restored, name), getattr(fc, name))


def test_global_model_is_scale_free(make_series):
    """Per-series scaling: a series times 10 gets exactly 10 times the forecast."""
    one = make_series(48, seed=4)
    frames = []
    for sid, factor in (("small", 1.0), ("large", 10.0)):
        f = one * factor
        f.index = pd.MultiIndex.from_product([[sid], one.index], names=[SERIES, DATE])
        frames.append(f)
    fc = GradientBoosting(season_length=12, **FAST).fit(pd.concat(frames)).predict(5)
    for name in ("mean", "lower", "upper"):
        frame = getattr(fc, name)
        np.testing.assert_allclose(frame.xs("large", level=SERIES).to_numpy(),
                                   10.0 * frame.xs("small", level=SERIES).to_numpy(),
                                   rtol=1e-9)


def test_ragged_panel_continues_each_series_from_its_own_end(make_panel_frame):
    panel = make_panel_frame(n=60)
    # series a starts late (36 obs), series b ends 5 months early
    a = panel.loc[["a"]].iloc[24:]
    b = panel.loc[["b"]].iloc[:-5]
    ragged = pd.concat([a, b, panel.loc[["c"]]])
    fc = GradientBoosting(season_length=12, **FAST).fit(ragged).predict(3)
    firsts = fc.mean.reset_index(level=DATE).groupby(level=SERIES)[DATE].min()
    assert firsts["a"] == firsts["c"] == pd.Timestamp("2020-01-01")
    assert firsts["b"] == pd.Timestamp("2019-08-01")


def test_local_models_are_wrapped_per_series(panel):
    model = GradientBoosting(season_length=12, global_model=False, **FAST)
    assert model.capabilities["panel"] is False
    with pytest.raises(ModelError):
        model.fit(panel)
    wrapped = adapt(model, panel)
    assert isinstance(wrapped, PerSeries)
    fc = wrapped.fit(panel).predict(4)
    assert sorted(wrapped.models_) == ["a", "b", "c"]
    assert all(isinstance(m, GradientBoosting) for m in wrapped.models_.values())
    assert fc.mean.index.names == [SERIES, DATE]
    assert len(fc.mean) == 12
    assert wrapped.fit_info_["converged"] is True
    # each local model equals one fitted on that series alone
    alone = model.clone().fit(panel.xs("b", level=SERIES).asfreq("MS")).predict(4)
    np.testing.assert_allclose(fc.mean.xs("b", level=SERIES).to_numpy(), alone.mean.to_numpy())


def test_intervals_widen_with_horizon(monthly):
    model = GradientBoosting(season_length=12, calibration=6, **FAST).fit(monthly)
    assert len(model.widths_) == 6
    assert (np.diff(model.widths_) >= 0).all()
    fc = model.predict(15)  # beyond the calibration horizon too
    width = (fc.upper - fc.lower)["y"].to_numpy()
    assert (width > 0).all()
    assert (np.diff(width) >= -1e-12).all()
    assert width[-1] > width[5]


def test_intervals_widen_per_series_on_panel(panel):
    fc = GradientBoosting(season_length=12, **FAST).fit(panel).predict(30)
    width = fc.upper - fc.lower
    for _, w in width.groupby(level=SERIES):
        assert (np.diff(w["y"].to_numpy()) >= -1e-9).all()


def test_differencing_extrapolates_a_trend():
    index = pd.date_range("2010-01-01", periods=60, freq="MS", name=DATE)
    y = pd.DataFrame({"y": 10.0 + 2.0 * np.arange(60)}, index=index)
    truth = 10.0 + 2.0 * np.arange(60, 72)
    params = {"season_length": 12, "max_iter": 30, "min_samples_leaf": 3}
    diffed = GradientBoosting(differencing=1, **params).fit(y).predict(12).mean["y"]
    levels = GradientBoosting(differencing=0, **params).fit(y).predict(12).mean["y"]
    err1 = np.abs(diffed.to_numpy() - truth).mean()
    err0 = np.abs(levels.to_numpy() - truth).mean()
    assert err1 < 1.0
    assert err1 < 0.1 * err0
    assert levels.max() <= y["y"].max() + 1e-9  # trees cannot exceed what they saw


def test_exog_is_used_on_panels(panel):
    flags = np.random.default_rng(7).integers(0, 2, len(panel)).astype(float)
    x = pd.DataFrame({"x": flags}, index=panel.index)
    y = panel.copy()
    y["y"] = y["y"] * (1.0 + x["x"])  # x doubles the level
    model = GradientBoosting(season_length=12, differencing=0, **FAST).fit(y, x)
    fc_index = model.forecast_index(3)
    on = model.predict(3, pd.DataFrame({"x": 1.0}, index=fc_index))
    off = model.predict(3, pd.DataFrame({"x": 0.0}, index=fc_index))
    ratio = (on.mean / off.mean)["y"]
    assert (ratio > 1.3).all()  # the model learned that x raises the level
    with pytest.raises(ModelError, match="rows"):
        model.predict(3, pd.DataFrame({"x": 1.0}, index=fc_index[:6]))


def test_fit_info_and_compact_state(monthly):
    model = GradientBoosting(season_length=12, **FAST).fit(monthly)
    assert model.fit_info_["converged"] is True
    assert model.fit_info_["rows"] == len(monthly) - 1 - 12
    # only the tail needed by the recursion is kept
    kept = model.series_["__single__"].values
    assert len(kept) == 12 + 1 + 1
    np.testing.assert_array_equal(kept, monthly["y"].to_numpy()[-len(kept):])


def test_reproducible_with_random_state(monthly):
    a = GradientBoosting(season_length=12, random_state=3, **FAST).fit(monthly).predict(4)
    b = GradientBoosting(season_length=12, random_state=3, **FAST).fit(monthly).predict(4)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.upper, b.upper)
