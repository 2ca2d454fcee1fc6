"""fast_ets: the array filter against the textbook recursions, a panel fitted at once as each
series alone, and the choice of specification."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from forecastflow.models import FitError, ModelError, build_model
from forecastflow.models import ets_arrays as engine
from tests.conftest import seasonal_monthly


def textbook_mam(y, alpha, beta, gamma, phi, level, slope, season):
    """ETS(M,Ad,M) in its multiplicative-error form (Hyndman et al. 2008, table 2.3)."""
    season = list(season)
    sse, log_abs = 0.0, 0.0
    for t, value in enumerate(y):
        s = season[t % len(season)]
        yhat = (level + phi * slope) * s
        e = (value - yhat) / yhat
        sse += e * e
        log_abs += np.log(abs(yhat))
        level, slope = (level + phi * slope) * (1 + alpha * e), phi * slope + beta * (
            level + phi * slope) * e
        season[t % len(season)] = s * (1 + gamma * e)
    return level, slope, np.array(season), sse, log_abs


def test_the_filter_follows_the_multiplicative_error_recursions():
    y = seasonal_monthly(40)["y"].to_numpy()
    s0 = 1 + 0.05 * np.sin(2 * np.pi * np.arange(12) / 12)
    params = np.array([[0.3, 0.05, 0.1, 0.9, 95.0, 0.7]])
    f = engine.run_filter(y[None, :], np.array([40]), params, s0[None, :],
                          np.array([True]), np.array([True]))
    level, slope, season, sse, log_abs = textbook_mam(y, 0.3, 0.05, 0.1, 0.9, 95.0, 0.7, s0)
    np.testing.assert_allclose([f.level[0], f.slope[0], f.sse[0], f.log_abs[0]],
                               [level, slope, sse, log_abs], rtol=1e-10)
    np.testing.assert_allclose(f.season[0], season, rtol=1e-10)


def test_nelder_mead_minimizes_each_row_on_its_own():
    targets = np.array([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0]])

    def f(x, rows):
        return np.sum((x - targets[rows]) ** 2, axis=1)

    x, value, stopped = engine.nelder_mead(f, np.zeros((3, 2)), np.ones(2), max_iter=300,
                                           tol=1e-12)
    np.testing.assert_allclose(x, targets, atol=1e-4)
    assert (value < 1e-7).all() and stopped.all()
    assert not engine.nelder_mead(f, np.zeros((3, 2)), np.ones(2), max_iter=3)[2].any()


def panel(n_series: int = 5) -> pd.DataFrame:
    frames = []
    for k in range(n_series):
        y = seasonal_monthly(48 + 6 * k, seed=k, level=100.0 + 20 * k)
        y.index = y.index + pd.DateOffset(months=k)
        frames.append(y.assign(series_id=f"s{k}").set_index("series_id", append=True)
                      .swaplevel())
    return pd.concat(frames)


def test_a_panel_fits_at_once_as_each_series_alone():
    y = panel(3)
    together = build_model("fast_ets", {"max_iter": 40}, season_length=12).fit(y)
    fc = together.predict(6)
    for sid, rows in y.groupby(level="series_id"):
        alone_y = rows.droplevel("series_id")
        alone_y.index = pd.DatetimeIndex(alone_y.index, freq="MS")
        alone = build_model("fast_ets", {"max_iter": 40}, season_length=12).fit(alone_y)
        np.testing.assert_allclose(fc.mean.loc[sid].to_numpy(),
                                   alone.predict(6).mean.to_numpy(), rtol=1e-8)
    assert sum(together.chosen().values()) == 3
    moved = together.update(y)  # same data: same forecasts
    np.testing.assert_allclose(moved.predict(6).mean.to_numpy(), fc.mean.to_numpy())
    again = pickle.loads(pickle.dumps(together))
    np.testing.assert_allclose(again.predict(6).upper.to_numpy(), fc.upper.to_numpy())


def test_a_seasonal_trended_series_gets_a_seasonal_trended_model():
    y = seasonal_monthly(96)
    model = build_model("fast_ets", {"max_iter": 100}, season_length=12).fit(y.iloc[:-12])
    assert next(iter(model.chosen())).split(",")[2].startswith(("A", "M"))  # seasonal
    error = np.abs(model.predict(12).mean["y"].to_numpy() - y["y"].to_numpy()[-12:])
    assert error.mean() < 3 * 1.5  # the noise sd is 1.5


def test_bad_settings_and_short_series_are_named():
    with pytest.raises(ModelError, match="damped"):
        build_model("fast_ets", {"damped": "maybe"}).fit(seasonal_monthly(24))
    # One series too short for any ETS form does not sink the panel: it is a random walk,
    # and the fit says so. A constant series fits exactly (no infinite likelihood).
    y = panel(2)
    short = y.loc[["s0"]].iloc[:3]
    flat = y.loc[["s1"]].assign(y=5.0).rename(index={"s1": "flat"}, level="series_id")
    model = build_model("fast_ets", {"max_iter": 30}, season_length=12).fit(
        pd.concat([y.loc[["s1"]], short, flat]))
    assert model.fit_info_["fallbacks"] == ["s0"] and "s0" in model.fit_info_["warnings"][0]
    fc = model.predict(3).mean
    np.testing.assert_allclose(fc.loc["s0"].to_numpy().ravel(), short["y"].iloc[-1],
                               rtol=1e-3)
    np.testing.assert_allclose(fc.loc["flat"].to_numpy().ravel(), 5.0, rtol=1e-9)
    with pytest.raises(FitError, match="could not fit any"):
        build_model("fast_ets", {}).fit(pd.concat([short, short.rename(
            index={"s0": "s9"}, level="series_id")]))

