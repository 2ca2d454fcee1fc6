"""Baselines: naive (random walk), seasonal naive and drift, with the textbook interval
widths (Hyndman & Athanasopoulos, FPP3 sec. 5.5) from in-sample residuals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastflow.models.base import Forecaster, normal_quantile, residual_sigma


class _Baseline(Forecaster):
    capabilities = {"multivariate": True, "exogenous": False, "panel": False, "intervals": True}

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        self.history_ = y.to_numpy(dtype=float)[-self._memory():]
        self.sigma_ = residual_sigma(self._residuals(y.to_numpy(dtype=float)))
        self.n_train_ = len(y)

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        # The latest values move; the residual scale (and drift) stay as estimated.
        self.history_ = y.to_numpy(dtype=float)[-self._memory():]

    def _memory(self) -> int:
        return 1

    def _widths(self, horizon: int) -> np.ndarray:
        raise NotImplementedError

    def _residuals(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _predict(self, horizon: int, X: pd.DataFrame | None,
                 index: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean = self._point(horizon)
        half = normal_quantile(self.coverage) * self._widths(horizon)[:, None] * self.sigma_
        return mean, mean - half, mean + half

    def _point(self, horizon: int) -> np.ndarray:
        raise NotImplementedError


class Naive(_Baseline):
    """Last value carried forward (random walk)."""

    family = "naive"

    def __init__(self, coverage: float = 0.9) -> None:
        self.coverage = coverage

    def _residuals(self, values: np.ndarray) -> np.ndarray:
        return np.diff(values, axis=0)

    def _point(self, horizon: int) -> np.ndarray:
        return np.repeat(self.history_[-1:], horizon, axis=0)

    def _widths(self, horizon: int) -> np.ndarray:
        return np.sqrt(np.arange(1, horizon + 1))


class SeasonalNaive(_Baseline):
    """Value of the same season one cycle earlier; ``season_length`` None means the data's."""

    family = "seasonal_naive"

    def __init__(self, season_length: int | None = None, coverage: float = 0.9) -> None:
        self.season_length = season_length
        self.coverage = coverage

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        m = self.season_length or 1
        self.m_ = m if len(y) > m else 1  # too short for a cycle: fall back to naive
        super()._fit(y, X)

    def _memory(self) -> int:
        return self.m_

    def _residuals(self, values: np.ndarray) -> np.ndarray:
        return values[self.m_:] - values[: -self.m_]

    def _point(self, horizon: int) -> np.ndarray:
        reps = -(-horizon // self.m_)
        return np.tile(self.history_, (reps, 1))[:horizon]

    def _widths(self, horizon: int) -> np.ndarray:
        k = (np.arange(1, horizon + 1) - 1) // self.m_
        return np.sqrt(k + 1)


class Drift(_Baseline):
    """Random walk with the average historical change as drift."""

    family = "drift"

    def __init__(self, coverage: float = 0.9) -> None:
        self.coverage = coverage

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        values = y.to_numpy(dtype=float)
        self.slope_ = (values[-1] - values[0]) / max(len(values) - 1, 1)
        super()._fit(y, X)

    def _residuals(self, values: np.ndarray) -> np.ndarray:
        return np.diff(values, axis=0) - self.slope_

    def _point(self, horizon: int) -> np.ndarray:
        steps = np.arange(1, horizon + 1)[:, None]
        return self.history_[-1:] + steps * self.slope_

    def _widths(self, horizon: int) -> np.ndarray:
        h = np.arange(1, horizon + 1)
        return np.sqrt(h * (1 + h / max(self.n_train_ - 1, 1)))
