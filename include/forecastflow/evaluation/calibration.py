"""Interval calibration from backtest forecasts (the windows' ``predictions`` tables:
window, step, actual, forecast, lower, upper).

``factors``: per step ahead, the ``coverage`` quantile of |actual - forecast| divided by the
half-width on the side the actual fell (pooled over series, targets and windows; steps with
fewer than ``MIN_POINTS`` errors take the pooled factor). Intervals whose backtest coverage is
within two binomial standard errors of the nominal level are left alone: with a few dozen
points, a factor would mostly fit noise. ``checked_coverage`` measures what
calibration buys without fooling itself: each window is scaled with factors learned on the
other windows only.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from forecastflow.models.base import Forecaster
from forecastflow.models.calibrated import Calibrated

log = logging.getLogger(__name__)
MIN_POINTS = 20
BOUNDS = (0.2, 5.0)


def _ratios(predictions: pd.DataFrame) -> pd.DataFrame:
    rows = predictions.dropna(subset=["actual", "forecast", "lower", "upper"])
    err = rows["actual"] - rows["forecast"]
    half = np.where(err >= 0, rows["upper"] - rows["forecast"], rows["forecast"] - rows["lower"])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(err.to_numpy()) / np.maximum(half, 1e-12)
    return pd.DataFrame({"window": rows["window"].to_numpy(), "step": rows["step"].to_numpy(),
                         "ratio": ratio})


def factors(predictions: pd.DataFrame, coverage: float, horizon: int) -> list[float] | None:
    """Per-step factors (``horizon`` of them), or None with too few backtest points."""
    ratios = _ratios(predictions)
    return _factors(ratios, coverage, horizon)


def _factors(ratios: pd.DataFrame, coverage: float, horizon: int) -> list[float] | None:
    ratios = ratios[np.isfinite(ratios["ratio"])]
    if len(ratios) < MIN_POINTS:
        return None
    raw = float(np.mean(ratios["ratio"] <= 1.0))
    if abs(raw - coverage) <= 2.0 * np.sqrt(coverage * (1.0 - coverage) / len(ratios)):
        return None  # the intervals already cover as they should, within sampling noise
    pooled = float(np.quantile(ratios["ratio"], coverage))
    by_step = dict(tuple(ratios.groupby("step")["ratio"]))
    out = []
    for step in range(1, horizon + 1):
        values = by_step.get(step)
        value = float(np.quantile(values, coverage)) if values is not None and len(
            values) >= MIN_POINTS else pooled
        out.append(float(np.clip(value, *BOUNDS)))
    return out


def checked_coverage(predictions: pd.DataFrame, coverage: float,
                     horizon: int) -> float | None:
    """Coverage of the calibrated intervals, each window scaled by factors from the others."""
    ratios = _ratios(predictions)
    windows = sorted(ratios["window"].unique())
    if len(windows) < 2:
        return None
    inside = []
    for window in windows:
        learned = _factors(ratios[ratios["window"] != window], coverage, horizon) or [
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
