"""ETS: the automatic choice by AICc (as AutoETS), the allowed components per series,
repeatable simulated intervals, and state rebuilt without re-estimation."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from forecastflow.models import ModelError
from forecastflow.models.ets import Ets
from tests.conftest import seasonal_monthly


def test_auto_picks_the_lowest_aicc_among_allowed_specifications():
    y = seasonal_monthly(72)
    model = Ets(season_length=12, trend="add", damped=False).fit(y)
    tried = model.fit_info_["tried"]
    # error add/mul x seasonal none/add/mul, without additive error on multiplicative seasons
    assert len(tried) == 5
    chosen = model.fit_info_["chosen"]
    aiccs = {line.split(":")[0]: float(line.rsplit(" ", 1)[1]) for line in tried
             if "AICc" in line}
    assert chosen == min(aiccs, key=aiccs.get) and model.aicc_ == pytest.approx(aiccs[chosen])
    # Seasonal data with a trend: a seasonal, trended model wins.
    assert chosen.endswith(",A,A)") or chosen.endswith(",A,M)")


def test_components_the_data_do_not_allow_are_left_out():
    y = seasonal_monthly(72)
    shifted = y - float(y["y"].min())  # a zero: no multiplicative component
    specs = Ets(season_length=12).candidates(shifted["y"].to_numpy())
    assert specs and all(s["error"] == "add" and s["seasonal"] != "mul" for s in specs)
    short = Ets(season_length=12).candidates(y["y"].to_numpy()[:20])  # under two cycles
    assert all(s["seasonal"] is None for s in short)
    assert all(s["seasonal"] is None for s in Ets().candidates(y["y"].to_numpy()))
    with pytest.raises(ModelError, match="seasonal 'add' needs season_length"):
        Ets(seasonal="add").fit(y)
    with pytest.raises(ModelError, match="ets error must be one of"):
        Ets(error="multiplicative").fit(y)


def test_intervals_are_repeatable_and_survive_pickling():
    y = seasonal_monthly(72)
    model = Ets(season_length=12, error="mul", trend="add", damped=True,
                seasonal="mul").fit(y)
    first, second = model.predict(6), model.predict(6)
    pd.testing.assert_frame_equal(first.lower, second.lower)
    again = pickle.loads(pickle.dumps(model))
    assert "results_" not in pickle.loads(pickle.dumps(model)).__getstate__()
    for name in ("mean", "lower", "upper"):
        np.testing.assert_allclose(getattr(again.predict(6), name), getattr(first, name))
    assert (first.lower.to_numpy() < first.mean.to_numpy()).all()
    assert (first.mean.to_numpy() < first.upper.to_numpy()).all()


def test_update_keeps_the_estimated_parameters():
    y = seasonal_monthly(84)
    model = Ets(season_length=12, error="add", trend="add", damped=False,
                seasonal="add").fit(y.iloc[:72])
    moved = model.update(y)
    np.testing.assert_array_equal(moved.params_, model.params_)
    assert moved.predict(3).mean.index[0] == y.index[-1] + pd.offsets.MonthBegin()
    refit = Ets(**model.get_params()).fit(y)
    assert not np.allclose(refit.params_, model.params_)  # refitting would change them
