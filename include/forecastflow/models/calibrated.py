"""Intervals that mean what they say: a fitted model's half-widths scaled per step ahead.

The factors come from backtest errors (``forecastflow.evaluation.calibration``): at step h,
the ``coverage`` quantile of |actual - forecast| / half-width on the side the actual fell.
A model whose intervals were too wide (a factor below 1) or too narrow (above 1) then covers
about the nominal share. Points are unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastflow.data.series import SERIES
from forecastflow.models.base import Forecast, Forecaster, ModelError

MIN_POINTS = 20
BOUNDS = (0.2, 5.0)


class Calibrated(Forecaster):
    """``model`` with its interval half-widths multiplied by ``factors[step - 1]`` (the last
    factor beyond the calibrated steps)."""

    family = "calibrated"

    def __init__(self, model: Forecaster, factors: list[float]) -> None:
        self.model = model
        self.factors = factors

    @property
    def capabilities(self) -> dict[str, bool]:  # type: ignore[override]
        return self.model.capabilities

    @property
    def coverage(self) -> float:
        return self.model.coverage

    @property
    def fit_info_(self) -> dict[str, object]:
        return getattr(self.model_, "fit_info_", {"converged": True, "warnings": []})

    @classmethod
    def around(cls, fitted: Forecaster, factors: list[float]) -> Calibrated:
        """``fitted`` (a fitted model, used as it is) with its intervals scaled."""
        if not hasattr(fitted, "targets_"):
            raise ModelError("calibrated: the model to wrap is not fitted")
        new = cls(fitted.clone(), factors)
        new._check_factors()
        new.model_ = fitted
        return new

    def _check_factors(self) -> None:
        factors = np.asarray(self.factors, dtype=float)
        if factors.ndim != 1 or not len(factors) or not np.all(np.isfinite(factors)) or (
                factors <= 0).any():
            raise ModelError(f"calibration factors must be positive numbers, got "
                             f"{self.factors!r}")

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        self._check_factors()
        self.model_ = self.model.clone().fit(y, X)

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        self.model_ = self.model_.update(y, X)

    def predict(self, horizon: int, X: pd.DataFrame | None = None) -> Forecast:
        if not hasattr(self, "model_"):
            raise ModelError("calibrated: call fit before predict")
        fc = self.model_.predict(horizon, X)
        return scale_intervals(fc, self.factors)

    def __getattr__(self, name: str) -> object:
        # Fitted attributes of the wrapped model (exog_, last_, ...) that this one lacks.
        if name.endswith("_") and not name.startswith("__") and "model_" in self.__dict__:
            return getattr(self.__dict__["model_"], name)
        raise AttributeError(name)


def scale_intervals(fc: Forecast, factors: list[float]) -> Forecast:
    """``fc`` with each row's half-widths times the factor of its step ahead."""
    mean = fc.mean
    if isinstance(mean.index, pd.MultiIndex):
        steps = mean.groupby(level=SERIES, sort=False).cumcount().to_numpy()
    else:
        steps = np.arange(len(mean))
    factor = np.asarray(factors, dtype=float)[np.minimum(steps, len(factors) - 1)][:, None]
    m = mean.to_numpy(dtype=float)
    lower = m - factor * np.maximum(m - fc.lower.to_numpy(dtype=float), 0.0)
    upper = m + factor * np.maximum(fc.upper.to_numpy(dtype=float) - m, 0.0)
    return Forecast(mean, pd.DataFrame(lower, index=mean.index, columns=mean.columns),
                    pd.DataFrame(upper, index=mean.index, columns=mean.columns), fc.coverage)


def half_width_ratios(frame: pd.DataFrame, mean: str = "forecast") -> pd.DataFrame:
    """|actual - mean| over the half-width on the side the actual fell, with each row's
    ``window`` and ``step``; rows without an actual or a finite ratio are left out."""
    rows = frame.dropna(subset=["actual", mean, "lower", "upper"])
    err = (rows["actual"] - rows[mean]).to_numpy(dtype=float)
    half = np.where(err >= 0, rows["upper"] - rows[mean], rows[mean] - rows["lower"])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(err) / np.maximum(np.asarray(half, dtype=float), 1e-12)
    out = pd.DataFrame({"window": rows["window"].to_numpy(), "step": rows["step"].to_numpy(),
                        "ratio": ratio})
    return out[np.isfinite(out["ratio"])]


def step_factors(ratios: pd.DataFrame, coverage: float, horizon: int) -> list[float] | None:
    """Per step ahead, the ``coverage`` quantile of the ratios (steps with fewer than
    ``MIN_POINTS`` take the pooled one), bounded to ``BOUNDS``. None with too few points, or
    when the intervals already cover within two binomial standard errors of ``coverage``
    (with a few dozen points a factor would mostly fit noise)."""
    if len(ratios) < MIN_POINTS:
        return None
    raw = float(np.mean(ratios["ratio"] <= 1.0))
    if abs(raw - coverage) <= 2.0 * np.sqrt(coverage * (1.0 - coverage) / len(ratios)):
        return None
    pooled = float(np.quantile(ratios["ratio"], coverage))
    by_step = dict(tuple(ratios.groupby("step")["ratio"]))
    out = []
    for step in range(1, horizon + 1):
        values = by_step.get(step)
        value = float(np.quantile(values, coverage)) if values is not None and len(
            values) >= MIN_POINTS else pooled
        out.append(float(np.clip(value, *BOUNDS)))
    return out
