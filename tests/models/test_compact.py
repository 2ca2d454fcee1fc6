"""Per-series bookkeeping pickles as arrays: a model's bytes do not hold an object per
series, and what comes back is what went in."""

from __future__ import annotations

import pickle

import pandas as pd

from forecastflow.models import build_model
from forecastflow.models.compact import SeriesChoices, SeriesEnds
from forecastflow.models.transforms import ForecastPipeline
from tests.conftest import make_panel

N = 5_000


def ends(n: int = N, unit: str = "s") -> SeriesEnds:
    dates = pd.date_range("2020-01-01", periods=30, freq="MS").as_unit(unit)
    # One Timestamp object per series, as a fitted model has.
    return SeriesEnds((f"store{k:05d}_item", (dates[k % 30] + pd.Timedelta(0)).as_unit(unit))
                      for k in range(n))


def test_series_ends_pickle_as_ids_and_one_array():
    last = ends()
    data = pickle.dumps(last, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(data)
    assert type(back) is SeriesEnds and back == last and list(back) == list(last)
    assert {v.unit for v in back.values()} == {"s"}  # the dates' resolution is kept
    plain = pickle.dumps(dict(last), protocol=pickle.HIGHEST_PROTOCOL)
    # 15-character ids and a 2-byte code per date, against a pickled Timestamp per series.
    assert len(data) < 22 * N and len(plain) > 30 * N


def test_equal_id_lists_are_stored_once():
    last, choices = ends(), SeriesChoices((f"store{k:05d}_item", [k % 3, 2]) for k in range(N))
    one = len(pickle.dumps(last))
    both = pickle.loads(data := pickle.dumps([last, ends(), choices]))
    assert len(data) < one + 2 * N + 4 * N + 1000  # second codes, the choice table
    assert both[2] == choices and both[2]["store00004_item"] == [1, 2]


def test_unusual_dates_pickle_as_a_plain_dict():
    tz = SeriesEnds({"a": pd.Timestamp("2020-01-01", tz="UTC"),
                     "b": pd.Timestamp("2020-02-01", tz="UTC")})
    mixed = SeriesEnds({"a": pd.Timestamp("2020-01-01").as_unit("s"),
                        "b": pd.Timestamp("2020-02-01").as_unit("ns")})
    for last in (tz, mixed, SeriesEnds()):
        assert pickle.loads(pickle.dumps(last)) == last


def test_a_fitted_panel_model_keeps_its_series_order_through_pickling():
    panel = make_panel(("z", "a", "m"), n=36)
    model = ForecastPipeline(build_model("theta", {}, season_length=12), "log").fit(
        panel.loc[["z", "a", "m"]])
    back = pickle.loads(pickle.dumps(model))
    assert isinstance(back.last_, SeriesEnds) and list(back.last_) == ["z", "a", "m"]
    pd.testing.assert_frame_equal(back.predict(3).mean, model.predict(3).mean)
    moved = back.update(panel)
    assert list(moved.last_) == ["z", "a", "m"] and isinstance(moved.last_, SeriesEnds)
