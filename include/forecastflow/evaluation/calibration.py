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


def calibrated(model: Forecaster, problem: Any,
               predictions: pd.DataFrame | None) -> Forecaster:
    """``model`` wrapped in :class:`Calibrated` with factors from its backtest
    ``predictions``, when the problem asks for it (``calibrate_intervals``) and there are
    enough points; else ``model``."""
    if not problem.calibrate_intervals or predictions is None or predictions.empty:
        return model
    found = factors(predictions, problem.coverage, problem.horizon)
    if not found:
        return model
    log.info("interval calibration for %s: factors %s (steps 1..%d)", problem.name,
             [round(f, 3) for f in found[:6]], len(found))
    return Calibrated(model, found)
