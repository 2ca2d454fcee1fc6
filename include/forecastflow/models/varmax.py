"""Multivariate VARMAX(p, q) with exogenous regressors, via statsmodels.

Inputs are standardized (``scale=True``) with the training mean and standard deviation, which
helps the optimizer; forecasts and bounds are mapped back exactly. Non-convergence is recorded in
``fit_info_`` rather than raised: the backtest decides whether the result is usable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecastflow.models.base import ModelError
from forecastflow.models.statespace import StateSpaceForecaster


class Varmax(StateSpaceForecaster):
    family = "varmax"
    capabilities = {"multivariate": True, "exogenous": True, "panel": False, "intervals": True}

    def __init__(
        self,
        order: tuple[int, int] | list[int] = (1, 0),
        trend: str = "c",
        scale: bool = True,
        maxiter: int = 50,
        coverage: float = 0.9,
    ) -> None:
        self.order = order
        self.trend = trend
        self.scale = scale
        self.maxiter = maxiter
        self.coverage = coverage

    def _arrays(self, y: pd.DataFrame, X: pd.DataFrame | None, refit: bool = True,
                ) -> tuple[np.ndarray, np.ndarray | None]:
        if y.shape[1] < 2:
            raise ModelError(f"varmax needs at least 2 target columns, got {list(y.columns)}")
        endog = y.to_numpy(dtype=float)
        exog = None if X is None else X.to_numpy(dtype=float)
        if self.scale:
            if refit:
                self.y_mean_, self.y_std_ = endog.mean(axis=0), _safe_std(endog)
                if exog is not None:
                    self.x_mean_, self.x_std_ = exog.mean(axis=0), _safe_std(exog)
            endog = (endog - self.y_mean_) / self.y_std_
            if exog is not None:
                exog = (exog - self.x_mean_) / self.x_std_
        return endog, exog

    def _scale_exog(self, exog: np.ndarray) -> np.ndarray:
        if self.scale and hasattr(self, "x_mean_"):
            return (exog - self.x_mean_) / self.x_std_
        return exog

    def _build(self, endog: np.ndarray, exog: np.ndarray | None) -> Any:
        from statsmodels.tsa.statespace.varmax import VARMAX

        p, q = (int(v) for v in self.order)
        if p + q == 0:
            raise ModelError(f"varmax order {self.order!r} needs p > 0 or q > 0")
        if self.trend not in ("n", "c", "t", "ct"):
            raise ModelError(f"varmax trend must be n, c, t or ct, got {self.trend!r}")
        return VARMAX(endog, exog=exog, order=(p, q), trend=self.trend)

    def _predict(self, horizon: int, X: pd.DataFrame | None,
                 index: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean, lower, upper = self._forecast(horizon, X)
        if self.scale:
            mean, lower, upper = (a * self.y_std_ + self.y_mean_ for a in (mean, lower, upper))
        return mean, lower, upper


def _safe_std(values: np.ndarray) -> np.ndarray:
    std = values.std(axis=0)
    return np.where(std > 0, std, 1.0)
