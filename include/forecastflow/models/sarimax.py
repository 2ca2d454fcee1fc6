"""Univariate (seasonal) ARIMA with optional exogenous regressors, via statsmodels SARIMAX."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecastflow.models.base import ModelError
from forecastflow.models.statespace import StateSpaceForecaster


class Sarimax(StateSpaceForecaster):
    """SARIMAX(p,d,q)(P,D,Q,m). ``seasonal_order`` is (P, D, Q) or (P, D, Q, m); a missing or
    None ``m`` takes ``season_length``. ``trend``: n, c, t or ct."""

    family = "sarimax"
    capabilities = {"multivariate": False, "exogenous": True, "panel": False, "intervals": True}

    def __init__(
        self,
        order: tuple[int, int, int] | list[int] = (1, 0, 0),
        seasonal_order: tuple[int, ...] | list[int] | None = None,
        trend: str = "n",
        season_length: int | None = None,
        maxiter: int = 50,
        coverage: float = 0.9,
    ) -> None:
        self.order = order
        self.seasonal_order = seasonal_order
        self.trend = trend
        self.season_length = season_length
        self.maxiter = maxiter
        self.coverage = coverage

    def _orders(self) -> tuple[tuple[int, int, int], tuple[int, int, int, int]]:
        order = tuple(int(v) for v in self.order)
        if len(order) != 3:
            raise ModelError(f"sarimax order must be (p, d, q), got {self.order!r}")
        if not self.seasonal_order:
            return order, (0, 0, 0, 0)
        seasonal = [int(v) for v in self.seasonal_order[:3]]
        m = (self.seasonal_order[3] if len(self.seasonal_order) > 3 else None) or (
            self.season_length or 0)
        if m <= 1 or not any(seasonal):
            return order, (0, 0, 0, 0)
        return order, (*seasonal, int(m))

    def _build(self, endog: np.ndarray, exog: np.ndarray | None) -> Any:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        order, seasonal = self._orders()
        if self.trend not in ("n", "c", "t", "ct"):
            raise ModelError(f"sarimax trend must be n, c, t or ct, got {self.trend!r}")
        trend = self.trend
        if trend == "c" and (order[1] + seasonal[1]) > 1:
            # statsmodels applies the trend to the differenced series: after one difference a
            # constant is a drift (linear levels); after two it would be a quadratic.
            trend = "n"
        return SARIMAX(endog[:, 0], exog=exog, order=order, seasonal_order=seasonal,
                       trend=trend)

    def _predict(self, horizon: int, X: pd.DataFrame | None,
                 index: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._forecast(horizon, X)
