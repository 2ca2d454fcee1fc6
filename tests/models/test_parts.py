"""A panel fitted in parts (as the training DAG's mapped fit does) forecasts as one model."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.series import SERIES
from forecastflow.evaluation.defaults import ensemble_params
from forecastflow.models import ModelError, build_model
from forecastflow.models.calibrated import Calibrated
from forecastflow.models.parts import SeriesParts, slices
from forecastflow.models.transforms import ForecastPipeline
from tests.conftest import make_panel

IDS = tuple(f"s{k}" for k in range(7))
LEVELS = tuple(float(10 ** (k % 4)) * 50 for k in range(7))


@pytest.fixture(scope="module")
def seven() -> pd.DataFrame:
    return make_panel(IDS, n=40, levels=LEVELS)


def test_slices_cover_every_series_once():
    assert slices(10, 3) == [[0, 3], [3, 7], [7, 10]]
    assert slices(2, 5) == [[0, 1], [1, 2]]  # never an empty part
    with pytest.raises(ValueError, match="0 series"):
        slices(0, 2)


@pytest.mark.parametrize("family,params", [
    ("fast_ets", {"max_iter": 60}), ("theta", {}), ("seasonal_naive", {}),
    ("ensemble", {**ensemble_params(10_000, 12),
                  "members": [{"family": "fast_ets", "params": {"max_iter": 60}},
                              {"family": "theta"},
                              {"family": "seasonal_naive"}]})])
def test_parts_forecast_as_the_whole_panel(seven, family, params):
    model = ForecastPipeline(build_model(family, params, season_length=12, horizon=4), "log")
    whole = model.clone().fit(seven)
    parts = SeriesParts(model, 3).fit(seven)
    assert [len(p.last_) for p in parts.parts_] == [2, 3, 2]
    a, b = whole.predict(4), parts.predict(4)
    for key in ("mean", "lower", "upper"):
        pd.testing.assert_frame_equal(getattr(a, key), getattr(b, key))
    assert list(parts.last_) == list(IDS) and parts.n_obs_ == len(seven)
    # Moving the origin (the forecast DAG) goes through the parts, in any row order.
    shuffled = seven.sample(frac=1.0, random_state=0)
    moved = parts.update(shuffled.sort_index(level=[SERIES, "date"], ascending=[False, True]))
    pd.testing.assert_frame_equal(moved.predict(4).mean, whole.update(seven).predict(4).mean)
    assert pickle.loads(pickle.dumps(parts)).predict(2).mean.equals(b.mean.groupby(
        level=SERIES, sort=False).head(2))


def test_assembled_parts_fitted_apart_equal_one_fit(seven):
    """What the DAG does: each slice fitted by its own task, the parts put together."""
    model = build_model("theta", {}, season_length=12, horizon=4)
    ids = list(IDS)
    fitted = [model.clone().fit(seven.loc[ids[a:b]]) for a, b in slices(len(ids), 2)]
    assembled = SeriesParts.assemble(model, fitted)
    pd.testing.assert_frame_equal(assembled.predict(4).mean, model.clone().fit(
        seven).predict(4).mean)
    assert SeriesParts.assemble(model, fitted[:1]) is fitted[0]  # one part: the model itself
    wrapped = Calibrated.around(assembled, [2.0])
    fc, raw = wrapped.predict(3), assembled.predict(3)
    np.testing.assert_allclose((fc.upper - fc.mean).to_numpy(),
                               2.0 * (raw.upper - raw.mean).to_numpy())
    assert wrapped.last_ == assembled.last_ and wrapped.update(seven).predict(1).mean.shape == (
        7, 1)


def test_assemble_refuses_parts_that_do_not_fit_together(seven):
    model = build_model("theta", {}, season_length=12, horizon=4)
    first = model.clone().fit(seven.loc[["s0", "s1"]])
    with pytest.raises(ModelError, match="share series"):
        SeriesParts.assemble(model, [first, model.clone().fit(seven.loc[["s1", "s2"]])])
    with pytest.raises(ModelError, match="not fitted on a panel"):
        SeriesParts.assemble(model, [first, model.clone().fit(seven.loc["s3"])])
    renamed = seven.loc[["s2"]].rename(columns={"y": "sales"})
    with pytest.raises(ModelError, match="targets"):
        SeriesParts.assemble(model, [first, model.clone().fit(renamed)])
    with pytest.raises(ModelError, match="no fitted parts"):
        SeriesParts.assemble(model, [])
    with pytest.raises(ModelError, match="not fitted"):
        Calibrated.around(model, [1.0])
    with pytest.raises(ModelError, match="positive"):
        Calibrated.around(first, [0.0])


def test_unknown_series_and_bad_part_counts_are_named(seven):
    model = build_model("seasonal_naive", {}, season_length=12)
    parts = SeriesParts(model, 2).fit(seven)
    other = make_panel(("zz",), n=40, levels=(5.0,))
    with pytest.raises(ModelError, match="zz"):
        parts.update(pd.concat([seven, other]))
    with pytest.raises(ModelError, match="n_parts"):
        SeriesParts(model, 0).fit(seven)
    with pytest.raises(ModelError, match="splits a panel"):
        SeriesParts(model, 2).fit(seven.loc["s0"])
