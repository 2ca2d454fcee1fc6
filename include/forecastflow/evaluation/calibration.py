"""Interval calibration from backtest forecasts (the windows' ``predictions`` tables:
window, step, actual, forecast, lower, upper).

``factors``: per step ahead, the ``coverage`` quantile of |actual - forecast| divided by the
half-width on the side the actual fell, pooled over series, targets and windows (the rules are
``models.calibrated.step_factors``'s: thin steps take the pooled factor, and intervals that
already cover within sampling noise are left alone). ``checked_coverage`` measures what
calibration buys without fooling itself: each window is scaled with factors learned on the
other windows only.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from forecastflow.models.base import Forecaster
from forecastflow.models.calibrated import Calibrated, half_width_ratios, step_factors

log = logging.getLogger(__name__)


def factors(predictions: pd.DataFrame, coverage: float, horizon: int) -> list[float] | None:
    """Per-step factors (``horizon`` of them), or None (too few points, or intervals that
    already cover as they should)."""
    return step_factors(half_width_ratios(predictions), coverage, horizon)


def checked_coverage(predictions: pd.DataFrame, coverage: float,
                     horizon: int) -> float | None:
    """Coverage of the calibrated intervals, each window scaled by factors from the others."""
    ratios = half_width_ratios(predictions)
    windows = sorted(ratios["window"].unique())
    if len(windows) < 2:
        return None
    inside = []
    for window in windows:
        learned = step_factors(ratios[ratios["window"] != window], coverage, horizon) or [
            1.0] * horizon
        part = ratios[ratios["window"] == window]
        limit = np.asarray(learned)[np.minimum(part["step"].to_numpy() - 1, horizon - 1)]
        inside.append(part["ratio"].to_numpy() <= limit)
    return float(np.mean(np.concatenate(inside)))


def problem_factors(problem: Any, predictions: pd.DataFrame | None) -> list[float] | None:
    """The winner's factors from its backtest ``predictions`` when the problem asks for
    calibration (``calibrate_intervals``) and there are enough points; else None."""
    if not problem.calibrate_intervals or predictions is None or predictions.empty:
        return None
    found = factors(predictions, problem.coverage, problem.horizon)
    if found:
        log.info("interval calibration for %s: factors %s (steps 1..%d)", problem.name,
                 [round(f, 3) for f in found[:6]], len(found))
    return found


def calibrated(model: Forecaster, problem: Any,
               predictions: pd.DataFrame | None) -> Forecaster:
    """``model`` (unfitted) wrapped in :class:`Calibrated` with :func:`problem_factors`,
    or ``model`` when there are none."""
    found = problem_factors(problem, predictions)
    return Calibrated(model, found) if found else model


def calibrated_fitted(model: Forecaster, problem: Any,
                      predictions: pd.DataFrame | None) -> Forecaster:
    """The same for a ``model`` fitted already (not refitted)."""
    found = problem_factors(problem, predictions)
    return Calibrated.around(model, found) if found else model
