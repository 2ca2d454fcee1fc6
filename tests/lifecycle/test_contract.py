"""The forecast request contract: a forecast for ``h`` steps is the first ``h`` steps of the
forecast for the maximum horizon, for every family and transform. The REST API relies on it
to answer exog-free requests from a table stored with each served version."""

from __future__ import annotations

import pandas as pd
import pytest

from forecastflow.data.series import SERIES, SeriesData
from forecastflow.evaluation.search import Trial
from forecastflow.lifecycle.contract import predict_frame
from forecastflow.models import FAMILIES
from tests.conftest import FAST_PARAMS, MULTI_TARGET_FAMILIES, make_panel, problem_for

LIMIT = 12


def fitted(family: str, transform: str, data: SeriesData):
    trial = Trial(family, FAST_PARAMS.get(family, {}), transform)
    return trial.build(problem_for("prefix"), data.season).fit(data.y, data.X)


def check_prefix(model, meta: dict, series: list[str] | None = None) -> None:
    full = predict_frame(model, meta, pd.DataFrame({"horizon": [LIMIT]}))
    for h in (1, 5, LIMIT - 1):
        request = pd.DataFrame({"horizon": [h]})
        if series is not None:
            request = pd.DataFrame({SERIES: series, "horizon": h})
        part = predict_frame(model, meta, request)
        expected = full[full["step"] <= h]
        if series is not None:
            expected = expected[expected[SERIES].isin(series)]
        pd.testing.assert_frame_equal(part.reset_index(drop=True),
                                      expected.reset_index(drop=True))


@pytest.mark.parametrize("transform", ["none", "log", "diff", "log-diff"])
def test_forecast_for_h_is_prefix_of_max_horizon(family, transform, monthly, quarterly):
    y = quarterly[0] if family in MULTI_TARGET_FAMILIES else monthly
    if transform.startswith("log"):
        y = y - y.min() + 10.0
    model = fitted(family, transform, SeriesData(y, None, "QS" if family == "varmax" else "MS",
                                                 season=4 if family == "varmax" else 12))
    check_prefix(model, {"problem": "prefix", "horizon_limit": LIMIT})


@pytest.mark.parametrize("family", ["seasonal_naive", "gradient_boosting", "sarimax"])
def test_panel_prefix_and_series_subset(family):
    data = SeriesData(make_panel(), None, "MS", season=12)
    model = fitted(family, "none", data)
    meta = {"problem": "prefix", "horizon_limit": LIMIT, "panel": True,
            "series": ["a", "b", "c"]}
    check_prefix(model, meta)
    check_prefix(model, meta, series=["c", "a"])


def test_every_family_is_covered():
    assert set(FAMILIES) >= {"naive", "seasonal_naive", "drift", "sarimax", "varmax",
                             "gradient_boosting"}
