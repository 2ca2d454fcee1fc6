"""The Theta method: simple exponential smoothing with drift (Hyndman & Billah, 2003) on the
series deseasonalized when a seasonality test says so.

Fitting, for one series of length ``n``:

1. Seasonality test at lag ``m = season_length``: ``|r_m| > q * sqrt((1 + 2 sum_{k<m} r_k^2) / n)``
   with ``q`` the normal quantile of ``seasonality_level`` (90% by default, as the original
   M3 method). If seasonal, the series is divided by classical multiplicative seasonal indices
   (centred moving average ratios; strictly positive series only, else additive indices).
2. ``b0``: the slope of a least-squares line on time (the theta = 0 line).
3. ``alpha``: the SES smoothing parameter that minimizes the one-step squared error.

The forecast ``h`` steps ahead is the SES level plus ``b0 / 2 * (h - 1 + 1 / alpha - (1 -
alpha)^n / alpha)``, reseasonalized; intervals are those of SES (the equivalent ARIMA(0,1,1):
``sigma^2 (1 + alpha^2 (h - 1))``) around it. :meth:`update` moves the level through new
observations with ``alpha``, ``b0`` and the seasonal indices unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastflow.models.base import (
    FitError,
    Forecaster,
    ModelError,
    check_finite_forecast,
    normal_quantile,
)


class Theta(Forecaster):
    """Theta method; ``deseasonalize``: ``auto`` (test), ``true`` or ``false``."""

    family = "theta"
    capabilities = {"multivariate": False, "exogenous": False, "panel": False,
                    "intervals": True}

    def __init__(self, season_length: int | None = None, deseasonalize: bool | str = "auto",
                 seasonality_level: float = 0.9, coverage: float = 0.9) -> None:
        self.season_length = season_length
        self.deseasonalize = deseasonalize
        self.seasonality_level = seasonality_level
        self.coverage = coverage

    # Seasonality ---------------------------------------------------------------------------

    def _is_seasonal(self, values: np.ndarray) -> bool:
        m = self.season_length or 1
        if self.deseasonalize not in ("auto", True, False):
            raise ModelError(f"theta deseasonalize must be auto, true or false, got "
                             f"{self.deseasonalize!r}")
        if m <= 1 or self.deseasonalize is False or len(values) < 2 * m + 1:
            if self.deseasonalize is True and m > 1:
                raise ModelError(f"theta: deseasonalize needs two full cycles of {m}; got "
                                 f"{len(values)} observations")
            return False
        if self.deseasonalize is True:
            return True
        centred = values - values.mean()
        denom = float(centred @ centred)
        if denom == 0:
            return False
        acf = np.array([centred[k:] @ centred[:-k] / denom for k in range(1, m + 1)])
        limit = normal_quantile(self.seasonality_level) * np.sqrt(
            (1 + 2 * np.sum(acf[:-1] ** 2)) / len(values))
        return bool(abs(acf[-1]) > limit)

    def _indices(self, values: np.ndarray) -> np.ndarray:
        """Classical seasonal indices (length m) by centred moving average."""
        m = int(self.season_length or 1)
        weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
        trend = np.convolve(values, weights, mode="valid")
        offset = (len(values) - len(trend)) // 2
        multiplicative = bool(np.min(values) > 0)
        ratio = (values[offset:offset + len(trend)] / trend if multiplicative
                 else values[offset:offset + len(trend)] - trend)
        phase = (np.arange(len(trend)) + offset) % m
        raw = np.array([ratio[phase == k].mean() for k in range(m)])
        self.multiplicative_ = multiplicative
        return raw / raw.mean() if multiplicative else raw - raw.mean()

    def _adjust(self, values: np.ndarray, start: int = 0) -> np.ndarray:
        if self.indices_ is None:
            return values
        season = self.indices_[(np.arange(len(values)) + start) % len(self.indices_)]
        return values / season if self.multiplicative_ else values - season

    def _readjust(self, values: np.ndarray, start: int) -> np.ndarray:
        if self.indices_ is None:
            return values
        season = self.indices_[(np.arange(len(values)) + start) % len(self.indices_)]
        return values * season if self.multiplicative_ else values + season

    # Fitting -------------------------------------------------------------------------------

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        from scipy.optimize import minimize_scalar

        values = y.to_numpy(dtype=float)[:, 0]
        if len(values) < 3:
            raise FitError(f"theta needs at least 3 observations, got {len(values)}")
        self.multiplicative_ = False
        self.indices_ = self._indices(values) if self._is_seasonal(values) else None
        adjusted = self._adjust(values)
        t = np.arange(len(adjusted), dtype=float)
        self.b0_ = float(np.polyfit(t, adjusted, 1)[0])
        result = minimize_scalar(lambda a: _ses(adjusted, a)[1], bounds=(0.01, 0.99),
                                 method="bounded")
        self.alpha_ = float(result.x)
        self.level_, sse = _ses(adjusted, self.alpha_)
        self.sigma_ = float(np.sqrt(sse / max(len(adjusted) - 1, 1)))
        self.n_ = len(adjusted)
        self.fit_info_ = {"converged": bool(result.success), "warnings": [],
                          "seasonal": self.indices_ is not None, "alpha": self.alpha_}

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        values = y.to_numpy(dtype=float)[:, 0]
        self.level_, _ = _ses(self._adjust(values), self.alpha_)
        self.n_ = len(values)

    # Forecasting ---------------------------------------------------------------------------

    def _predict(self, horizon: int, X: pd.DataFrame | None,
                 index: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = np.arange(1, horizon + 1, dtype=float)
        a = self.alpha_
        drift = self.b0_ / 2.0 * (h - 1 + 1 / a - (1 - a) ** self.n_ / a)
        mean = self.level_ + drift
        half = normal_quantile(self.coverage) * self.sigma_ * np.sqrt(1 + a ** 2 * (h - 1))
        lower, upper = mean - half, mean + half
        out = [self._readjust(v, self.n_)[:, None] for v in (mean, lower, upper)]
        check_finite_forecast(self.family, out[0])
        return out[0], np.minimum(out[1], out[2]), np.maximum(out[1], out[2])


def _ses(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """Final level and one-step squared error of simple exponential smoothing (the level
    starts at the first value)."""
    level, sse = values[0], 0.0
    for value in values[1:]:
        error = value - level
        sse += error * error
        level += alpha * error
    return float(level), float(sse)
