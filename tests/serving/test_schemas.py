"""OpenAPI request examples of `forecastflow serve` for cases the HTTP fixtures of
tests/serving/test_app.py do not serve: a panel with exogenous inputs, odd metadata. In process: an
example must pass the API's own checks and forecast."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from forecastflow.data.series import SeriesData
from forecastflow.evaluation.search import Trial
from forecastflow.lifecycle.contract import model_meta
from forecastflow.serving.hub import Slot, run_forecast
from forecastflow.serving.schemas import check_request, forecast_example, parse_request
from tests.conftest import FAST_PARAMS, make_panel, problem_for


def test_example_for_a_panel_with_exog_forecasts_its_first_two_series():
    y = make_panel()
    rng = np.random.default_rng(7)
    X = pd.DataFrame({"price": rng.normal(10, 1, len(y)), "promo": rng.integers(0, 2, len(y))},
                     index=y.index).astype(float)
    data = SeriesData(y, X, "MS", season=12)
    problem = problem_for("panel_exog", exog=["price", "promo"], id_column="series_id")
    trial = Trial("gradient_boosting", FAST_PARAMS["gradient_boosting"], "none")
    model = trial.build(problem, data.season).fit(data.y, data.X)
    # As the server holds it: read back from JSON (the serving card / MLmodel metadata).
    meta = json.loads(json.dumps(model_meta(problem, data, model, {"trial": trial.to_dict()})))
    slot = Slot("panel_exog", "1", trial.family, model, meta, {}, "2020-12-01", 0.0, "registry")

    body = forecast_example(meta)
    assert body["series_ids"] == ["a", "b"] and 1 <= body["horizon"] <= 12
    assert len(body["exog"]) == 2 * body["horizon"]
    assert body["exog"][0] == {"series_id": "a", **meta["exog_last"]["a"]}
    request = parse_request(json.dumps(body).encode())
    check_request(slot, request)
    out = run_forecast(slot, request)
    assert {p["series_id"] for p in out["forecasts"]} == {"a", "b"}
    assert len(out["forecasts"]) == 2 * body["horizon"]


def test_example_stays_valid_with_odd_metadata():
    # Horizon above the limit is cut to it; exog values missing or not finite become 0.0
    # (a request carrying NaN would be refused).
    meta = {"problem": "odd", "horizon": 24, "horizon_limit": 12, "exog": ["a", "b"],
            "exog_last": {"a": float("nan")}, "panel": False, "series": []}
    body = forecast_example(meta)
    assert body == {"horizon": 12, "exog": [{"a": 0.0, "b": 0.0}] * 12}
    assert json.loads(json.dumps(body, allow_nan=False)) == body
    # A panel whose metadata lists no series: no (empty, refused) series_ids.
    assert forecast_example({"horizon": 3, "horizon_limit": 6, "panel": True}) == {"horizon": 3}
