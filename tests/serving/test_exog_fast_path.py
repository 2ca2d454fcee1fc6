"""The exog request path (run_forecast -> predict_columns -> the model) gives the numbers the
straightforward pandas computation gives, to the bit: exog frame built by column selection and
``pd.to_numeric``, target transform inverted on frames, long format by sorting."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.series import DATE, SeriesData
from forecastflow.evaluation.search import Trial
from forecastflow.lifecycle.contract import forecast_rows, model_meta, predict_frame
from forecastflow.models.base import Forecast
from forecastflow.models.calibrated import Calibrated
from forecastflow.serving.hub import Slot, run_forecast
from forecastflow.serving.schemas import ForecastRequest
from tests.conftest import problem_for

HORIZONS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def champion() -> tuple[object, dict]:
    """VARMAX(1, 0) with exog ``x`` on three quarterly targets, log-diff (as us_macro)."""
    rng = np.random.default_rng(1)
    n = 40
    index = pd.date_range("2008-01-01", periods=n, freq="QS", name=DATE)
    x = np.sin(np.arange(n) / 3.0) + rng.normal(0, 0.2, n)
    common = np.cumsum(rng.normal(0.5, 1.0, n))
    y = pd.DataFrame({"gdp": 200 + common + 2.0 * x, "cons": 150 + 0.8 * common + x,
                      "inv": 60 + 0.5 * common - 1.5 * x + rng.normal(0, 0.8, n)}, index=index)
    data = SeriesData(y, pd.DataFrame({"x": x}, index=index), "QS", season=4)
    problem = problem_for("fast_exog", exog=["x"], target=list(y.columns), frequency="QS",
                          horizon=4, max_horizon=4)
    trial = Trial("varmax", {"order": [1, 0], "trend": "c", "maxiter": 20}, "log-diff")
    model = trial.build(problem, data.season).fit(data.y, data.X)
    meta = json.loads(json.dumps(model_meta(problem, data, model, {"trial": trial.to_dict()})))
    return model, meta


def requests() -> list[pd.DataFrame]:
    """Requests of several horizons: float, integer and text-number exog, extra rows."""
    rng = np.random.default_rng(7)
    out = []
    for h in HORIZONS:
        out.append(pd.DataFrame({"x": rng.normal(0, 1, h), "horizon": h}))
        out.append(pd.DataFrame({"x": rng.integers(-2, 3, h + 2), "horizon": h}))
        out.append(pd.DataFrame({"x": [str(v) for v in rng.normal(0, 1, h)], "horizon": h}))
    return out


def straightforward(model, request: pd.DataFrame) -> pd.DataFrame:
    """The forecast computed without the fast paths, on frames throughout."""
    h = int(request["horizon"].iloc[0])
    X = request[["x"]].apply(pd.to_numeric, errors="coerce").iloc[:h]
    X.index = pd.date_range(model.last_, periods=h + 1, freq=model.freq_, name=DATE)[1:]
    pipe = model.model_ if isinstance(model, Calibrated) else model
    inner = pipe.model_.predict(h, X)  # the changes, before the transform's inverse
    transform = pipe.transform_
    last = pd.DataFrame([transform.last_.to_numpy()] * h, index=inner.mean.index,
                        columns=inner.mean.columns)
    level = inner.mean.cumsum() + last
    up = np.sqrt(((inner.upper - inner.mean) ** 2).cumsum())
    down = np.sqrt(((inner.mean - inner.lower) ** 2).cumsum())
    fc = Forecast(np.exp(level), np.exp(level - down), np.exp(level + up), inner.coverage)
    if isinstance(model, Calibrated):
        factor = np.asarray(model.factors, dtype=float)[np.minimum(np.arange(h),
                                                                   len(model.factors) - 1)]
        m = fc.mean.to_numpy()
        fc = Forecast(fc.mean, fc.mean - factor[:, None] * (m - fc.lower.to_numpy()),
                      fc.mean + factor[:, None] * (fc.upper.to_numpy() - m), fc.coverage)
    rows = []
    for target in fc.mean.columns:
        for step, date in enumerate(fc.mean.index, start=1):
            rows.append({DATE: date, "target": target, "step": step,
                         "forecast": fc.mean.at[date, target],
                         "lower": fc.lower.at[date, target],
                         "upper": fc.upper.at[date, target]})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("calibrated", [False, True])
def test_exog_forecasts_match_straightforward_computation(champion, calibrated):
    model, meta = champion
    if calibrated:
        model = Calibrated.around(model, [1.2, 0.8, 1.5])
    for request in requests():
        got = predict_frame(model, meta, request)
        expected = straightforward(model, request)
        pd.testing.assert_frame_equal(got, expected, check_exact=True, check_dtype=False)
        assert got.dtypes.astype(str).tolist()[2:] == ["int64", "float64", "float64",
                                                       "float64"]


def test_rest_answers_are_the_frame_rows(champion):
    """run_forecast (arrays straight to rows) answers what forecast_rows(predict_frame) gives,
    key order included."""
    model, meta = champion
    slot = Slot("fast_exog", "1", "varmax", model, meta, {}, "", 0.0, "registry")
    for h in HORIZONS:
        exog = [{"x": float(v)} for v in np.linspace(-1.0, 1.0, h)]
        answer = run_forecast(slot, ForecastRequest(horizon=h, exog=exog))
        frame = pd.DataFrame(exog).assign(horizon=h)
        assert json.dumps(answer["forecasts"]) == json.dumps(
            forecast_rows(predict_frame(model, meta, frame)))


def test_forecast_index_is_a_fresh_object(champion):
    """The cached calendar is not shared: renaming one forecast's index leaves the next."""
    model, _ = champion
    first = model.forecast_index(3)
    first.name = "renamed"
    assert model.forecast_index(3).name == DATE
    fc = model.predict(2, pd.DataFrame({"x": [0.1, 0.2]}))
    fc.mean.columns.name = "renamed"
    assert model.predict(2, pd.DataFrame({"x": [0.1, 0.2]})).mean.columns.name is None
