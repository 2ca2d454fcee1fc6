"""The default candidates of a problem that declares no models, and its end-to-end run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.problem import ProblemConfigError, parse_problem
from forecastflow.data.series import DATE, SERIES, SeriesData
from forecastflow.evaluation.backtest import BacktestSpec, backtest
from forecastflow.evaluation.defaults import default_models
from forecastflow.evaluation.search import plan_trials
from forecastflow.workflow import run_problem
from tests.conftest import make_panel, seasonal_monthly


def problem(**overrides):
    base = {"name": "auto", "source": "x.csv", "time_column": "date", "target": "y",
            "frequency": "MS", "horizon": 6, "backtest": {"windows": 2}}
    return parse_problem({**base, **overrides})


def families(specs):
    return [s.family for s in specs]


def test_models_are_optional_and_chosen_from_the_data():
    single = SeriesData(seasonal_monthly(72), None, "MS", 12)
    assert problem().models is None
    assert families(default_models(problem(), single)) == ["ensemble", "seasonal_naive"]
    short = SeriesData(seasonal_monthly(20), None, "MS", 12)
    assert families(default_models(problem(), short)) == ["ensemble", "naive"]
    ids = tuple(f"s{k}" for k in range(25))
    many = SeriesData(make_panel(ids, 60, tuple(float(k + 1) for k in range(25))), None, "MS",
                      12)
    panel_specs = default_models(problem(id_column="shop"), many)
    assert families(panel_specs) == ["ensemble", "gradient_boosting", "seasonal_naive"]
    assert (panel_specs[0].params["combination"], panel_specs[0].params["top_k"]) == (
        "median", None)
    assert [m["family"] for m in panel_specs[0].params["members"]] == [
        "fast_ets", "theta", "seasonal_naive"]
    single_params = default_models(problem(), single)[0].params
    assert (single_params["combination"], single_params["top_k"]) == ("mean", 2)
    # Few series: automatic ARIMA joins the members (its search costs seconds per series).
    assert [m["family"] for m in single_params["members"]] == [
        "ets", "theta", "auto_arima", "seasonal_naive"]
    eight = SeriesData(make_panel(ids[:8], 60, tuple(float(k + 1) for k in range(8))), None,
                       "MS", 12)
    assert "members" not in default_models(problem(id_column="shop"), eight)[0].params
    with_exog = default_models(problem(exog=["x"]), single)
    assert families(with_exog) == ["ensemble", "sarimax", "seasonal_naive"]
    several = default_models(problem(target=["y", "z"]), single)
    assert "varmax" in families(several)


def test_planning_without_models_needs_the_data():
    with pytest.raises(ProblemConfigError, match="declares no models"):
        plan_trials(problem())
    trials = plan_trials(problem(), data=SeriesData(seasonal_monthly(72), None, "MS", 12))
    assert families(trials) == ["ensemble", "seasonal_naive"]


def test_a_problem_without_models_runs_end_to_end():
    y = seasonal_monthly(72)
    data = SeriesData(y, None, "MS", 12)
    report = run_problem(problem(), data=data)
    assert report.selection.best.trial.family in {"ensemble", "seasonal_naive"}
    assert {t.trial.family for t in report.trials} == {"ensemble", "seasonal_naive"}
    assert report.forecast.mean.shape == (6, 1)


def test_backtests_of_ragged_panels_score_the_points_that_have_actuals():
    y = make_panel(("a", "b"), 48, (100.0, 200.0))
    y = y.drop(index=[("b", d) for d in y.loc["b"].index[-4:]])
    data = SeriesData(y, None, "MS", 12)
    from forecastflow.models import build_model
    from forecastflow.models.transforms import ForecastPipeline

    model = ForecastPipeline(build_model("seasonal_naive", {}, season_length=12))
    result = backtest(model, data,
                      BacktestSpec(horizon=6, windows=2, min_train=26))
    assert result.ok and np.isfinite(result.metrics()["mase"])
    preds = result.predictions
    last = preds[preds["window"] == 1]
    # Series b ends in August, inside the last window's test period (July to December):
    # only its July and August forecasts have actuals, and only they score.
    assert last.groupby(SERIES)[DATE].min()["b"] == pd.Timestamp("2018-07-01")
    assert last[last[SERIES] == "b"]["actual"].notna().sum() == 2
    assert last[last[SERIES] == "a"]["actual"].notna().sum() == 6
