"""The library pipeline end to end, without Airflow: ingest → validate → plan → search →
select → fit the winner on all data → forecast. The training DAGs call the same stage
functions task by task."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from forecastflow.data.problem import ProblemConfig
from forecastflow.data.series import SeriesData
from forecastflow.data.validation import load_data, validate  # noqa: F401 - re-exported
from forecastflow.evaluation import calibration
from forecastflow.evaluation.backtest import BacktestResult, BacktestSpec, backtest
from forecastflow.evaluation.search import (
    Selection,
    Trial,
    TrialResult,
    baseline_trial,
    plan_trials,
    run_trial,
    select,
    window_table,
)
from forecastflow.models.base import Forecast, Forecaster
from forecastflow.models.transforms import hold_last_exog

log = logging.getLogger(__name__)


def fit_final(trial: Trial, data: SeriesData, problem: ProblemConfig,
              predictions: pd.DataFrame | None = None) -> Forecaster:
    """Fit the selected trial on all the data; with its backtest ``predictions`` (and
    ``calibrate_intervals``), its intervals calibrated on them."""
    model = calibration.calibrated(trial.build(problem, data.season), problem, predictions)
    return model.fit(data.y, data.X)


def evaluate_trial(trial: Trial, data: SeriesData, problem: ProblemConfig) -> BacktestResult:
    """The full backtest of one trial, keeping every window's forecasts (for plots/tables)."""
    spec = BacktestSpec.from_problem(problem, data.season,
                                     n_series=len(data.series_ids))
    return backtest(trial.build(problem, data.season), data, spec)


@dataclass
class RunReport:
    problem: str
    selection: Selection
    baseline: TrialResult
    model: Forecaster
    backtest: BacktestResult
    forecast: Forecast
    trials: list[TrialResult]
    seconds: float
    fingerprint: str
    metric: str = "mase"
    coverage_calibrated: float | None = None  # each backtest window scaled by the others

    @property
    def ratio(self) -> float:
        metric = "mase"
        return self.selection.best.metrics[metric] / self.baseline.metrics[metric]

    def summary(self) -> dict[str, Any]:
        best = self.selection.best
        return {
            "problem": self.problem,
            "family": best.trial.family,
            "params": best.trial.params,
            "transform": best.trial.transform,
            "metrics": {k: round(v, 4) for k, v in best.metrics.items()},
            "baseline_mase": round(self.baseline.metrics["mase"], 4),
            "mase_ratio": round(self.ratio, 4),
            "trials": len(self.trials),
            "failed_trials": sum(t.status != "ok" for t in self.trials),
            "seconds": round(self.seconds, 1),
            "fingerprint": self.fingerprint,
            "per_family": {f: round(r.metrics[self.metric], 4)
                           for f, r in self.selection.per_family.items()},
        }


def run_problem(problem: ProblemConfig, families: list[str] | None = None,
                max_trials: int | None = None, cutoff: pd.Timestamp | None = None,
                data: SeriesData | None = None) -> RunReport:
    """Search, select and fit for one problem; returns everything a caller wants to log."""
    start = time.perf_counter()
    data = data if data is not None else load_data(problem, cutoff)
    trials = plan_trials(problem, families, max_trials, data)
    log.info("problem %s: %d trial(s) over %s", problem.name, len(trials),
             sorted({t.family for t in trials}))
    results = [run_trial(t, data, problem) for t in trials]
    selection = select(results, problem.metric, problem.coverage)
    baseline = run_trial(baseline_trial(problem), data, problem)
    best = selection.best
    # The search already backtested the winner: reuse its windows and forecasts.
    evaluation = (evaluate_trial(best.trial, data, problem) if best.predictions is None else
                  BacktestResult(window_table(best).assign(
                      cutoff=lambda t: pd.to_datetime(t["cutoff"])), best.predictions))
    model = fit_final(best.trial, data, problem, evaluation.predictions)
    # Without known future exog, the demo forecast holds them at their last values.
    future = hold_last_exog(data.X, data.freq, problem.horizon) if model.exog_ else None
    forecast = model.predict(problem.horizon, future)
    checked = (calibration.checked_coverage(evaluation.predictions, problem.coverage,
                                            problem.horizon)
               if problem.calibrate_intervals and not evaluation.predictions.empty else None)
    return RunReport(problem.name, selection, baseline, model, evaluation, forecast, results,
                     time.perf_counter() - start, data.fingerprint(), problem.metric, checked)
