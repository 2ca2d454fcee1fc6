"""Batch forecasts from the latest data: the champion's state moves to the newest rows before
the cutoff (no refit); when the data do not fit the model it forecasts from its training end."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from forecastflow.data.series import SERIES, SeriesData
from forecastflow.models import Naive, Sarimax
from forecastflow.models.transforms import ForecastPipeline
from forecastflow.orchestration.forecast import forecast_frame, from_latest
from tests.conftest import FAST_PARAMS, make_panel


def meta_for(data: SeriesData, exog: list[str] | None = None) -> dict:
    return {"problem": "p", "horizon": 3, "horizon_limit": 12, "exog": exog or [],
            "exog_last": {}, "panel": data.is_panel,
            "series": [str(s) for s in pd.unique(data.y.index.get_level_values(SERIES))]
            if data.is_panel else [], "coverage": 0.9}


def test_forecasts_start_after_the_latest_data(monthly):
    model = ForecastPipeline(Naive()).fit(monthly.iloc[:-6])
    data = SeriesData(monthly, None, "MS")
    moved, _, origin_from = from_latest("p", model, meta_for(data), data)
    assert origin_from == "latest_data"
    rows = forecast_frame(moved, meta_for(data), 3)
    assert rows["date"].min() == monthly.index[-1] + pd.offsets.MonthBegin(1)
    assert rows["forecast"].tolist() == [monthly["y"].iloc[-1]] * 3
    # No newer data, or none readable: the model as trained.
    same = SeriesData(monthly.iloc[:-6], None, "MS")
    assert from_latest("p", model, meta_for(same), same)[2] == "training_end"
    assert from_latest("p", model, meta_for(data), None)[2] == "training_end"


def test_exog_held_at_the_latest_observed_values(quarterly):
    y, X = quarterly
    model = ForecastPipeline(Sarimax(**FAST_PARAMS["sarimax"])).fit(y[["gdp"]].iloc[:-4],
                                                                    X.iloc[:-4])
    data = SeriesData(y[["gdp"]], X, "QS")
    meta = {**meta_for(data, ["x"]), "exog_last": {"x": float(X["x"].iloc[-5])}}
    _, new_meta, origin_from = from_latest("p", model, meta, data)
    assert origin_from == "latest_data" and new_meta["exog_last"] == {"x": X["x"].iloc[-1]}
    assert meta["exog_last"] == {"x": float(X["x"].iloc[-5])}  # the caller's dict untouched


def test_panel_series_unknown_to_the_model_are_left_out_missing_ones_fall_back(caplog):
    panel = make_panel()
    old = panel[panel.groupby(level=SERIES).cumcount(ascending=False).to_numpy() >= 3]
    model = ForecastPipeline(Naive()).fit(old)
    meta = meta_for(SeriesData(old, None, "MS"))
    wider = make_panel(("a", "b", "c", "new"), levels=(50.0, 500.0, 5000.0, 1.0))
    with caplog.at_level(logging.WARNING):
        moved, _, origin_from = from_latest("p", model, meta, SeriesData(wider, None, "MS"))
    assert origin_from == "latest_data" and "not in the champion" in caplog.text
    rows = forecast_frame(moved, meta, 2)
    assert set(rows[SERIES]) == {"a", "b", "c"}
    np.testing.assert_allclose(rows.loc[rows[SERIES] == "a", "forecast"],
                               panel.loc["a", "y"].iloc[-1])
    narrower = panel[panel.index.get_level_values(SERIES) != "c"]
    with caplog.at_level(logging.WARNING):
        kept, _, origin_from = from_latest("p", model, meta, SeriesData(narrower, None, "MS"))
    assert origin_from == "training_end" and kept is model and "missing ['c']" in caplog.text
