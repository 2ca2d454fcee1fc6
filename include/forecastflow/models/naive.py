"""Baselines: naive (random walk), seasonal naive and drift, with the textbook interval
widths (Hyndman & Athanasopoulos, FPP3 sec. 5.5) from in-sample residuals.

They fit a whole panel at once: the data are a ``(series, time, target)`` array with every
series ending in the last column (one series is a panel of one), and the fitted state is a
few arrays of that shape's first and last axes, so a panel of 50,000 series pickles to a few
megabytes and forecasts in one array operation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecastflow.data.series import DATE, SERIES
from forecastflow.models.base import Forecaster, normal_quantile


def right_aligned(y: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(series, time, target)`` values, each series ending in the last column and NaN
    before its first observation; the series' lengths; their ids (first-seen order)."""
    raw = y.to_numpy(dtype=float)
    if not isinstance(y.index, pd.MultiIndex):
        return raw[None, :, :], np.array([len(raw)]), ["_"]
    codes, ids = pd.factorize(y.index.get_level_values(SERIES).astype(str))
    order = np.lexsort((y.index.get_level_values(DATE).to_numpy(), codes))
    codes = codes[order]
    n = np.bincount(codes)
    width = int(n.max())
    ends = np.cumsum(n)  # one past each series' last row, in sorted order
    column = width - (ends[codes] - np.arange(len(codes)))
    out = np.full((len(n), width, raw.shape[1]), np.nan)
    out[codes, column] = raw[order]
    return out, n, [str(i) for i in ids]


def _sigma(residuals: np.ndarray) -> np.ndarray:
    """Root mean square of the residuals over time, per (series, target), NaN ignored (at
    least a tiny epsilon)."""
    with np.errstate(invalid="ignore"):
        count = np.sum(np.isfinite(residuals), axis=1)
        total = np.nansum(np.square(residuals), axis=1)
        sigma = np.sqrt(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    return np.where(np.isfinite(sigma) & (sigma > 0), sigma, 1e-12)


class _Baseline(Forecaster):
    capabilities = {"multivariate": True, "exogenous": False, "panel": True, "intervals": True}

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        values, self.n_, _ = right_aligned(y)
        self._estimate(values)
        self.sigma_ = _sigma(self._residuals(values))
        self.history_ = values[:, -self._memory():]

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        # The latest values move; the residual scale (and drift) stay as estimated.
        values, n, ids = right_aligned(y)
        if isinstance(self.last_, dict):  # rows in the fitted series' order
            order = pd.Index(ids).get_indexer(list(self.last_))
            values, n = values[order], n[order]
        self.history_, self.n_ = values[:, -self._memory():], n

    def _estimate(self, values: np.ndarray) -> None:
        """Parameters beyond the residual scale (none for the naive forecast)."""

    def _memory(self) -> int:
        return 1

    def _widths(self, horizon: int) -> np.ndarray:
        """(series, horizon) multipliers of the one-step residual scale."""
        raise NotImplementedError

    def _residuals(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _point(self, horizon: int) -> np.ndarray:
        """(series, horizon, target) point forecasts."""
        raise NotImplementedError

    def _predict(self, horizon: int, X: pd.DataFrame | None,
                 index: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean = self._point(horizon)
        half = normal_quantile(self.coverage) * self._widths(horizon)[:, :, None] * (
            self.sigma_[:, None, :])
        k = mean.shape[2]
        return tuple(a.reshape(-1, k) for a in (mean, mean - half, mean + half))

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Models pickled before the panel arrays (one series: 2-d history, scalar season
        and length) load as panels of one."""
        if "history_" in state and np.ndim(state["history_"]) == 2:
            state["history_"] = state["history_"][None]
            state["sigma_"] = np.atleast_1d(state["sigma_"])[None]
            state["n_"] = np.array([state.pop("n_train_", len(state["history_"][0]))])
            if "m_" in state:
                state["m_"] = np.array([state["m_"]])
            if "slope_" in state:
                state["slope_"] = np.atleast_1d(state["slope_"])[None]
        self.__dict__.update(state)


class Naive(_Baseline):
    """Last value carried forward (random walk)."""

    family = "naive"

    def __init__(self, coverage: float = 0.9) -> None:
        self.coverage = coverage

    def _residuals(self, values: np.ndarray) -> np.ndarray:
        return np.diff(values, axis=1)

    def _point(self, horizon: int) -> np.ndarray:
        return np.repeat(self.history_[:, -1:], horizon, axis=1)

    def _widths(self, horizon: int) -> np.ndarray:
        return np.broadcast_to(np.sqrt(np.arange(1, horizon + 1)), (len(self.n_), horizon))


class SeasonalNaive(_Baseline):
    """Value of the same season one cycle earlier; ``season_length`` None means the data's.
    A series not longer than a cycle is forecast as naive."""

    family = "seasonal_naive"

    def __init__(self, season_length: int | None = None, coverage: float = 0.9) -> None:
        self.season_length = season_length
        self.coverage = coverage

    def _estimate(self, values: np.ndarray) -> None:
        m = self.season_length or 1
        self.m_ = np.where(self.n_ > m, m, 1)  # too short for a cycle: naive

    def _memory(self) -> int:
        return int(self.m_.max())

    def _residuals(self, values: np.ndarray) -> np.ndarray:
        out = np.diff(values, axis=1)
        m = int(self.m_.max())
        seasonal = self.m_ == m
        if m > 1 and seasonal.any():
            out[seasonal] = np.nan
            out[seasonal, m - 1:] = values[seasonal, m:] - values[seasonal, :-m]
        return out

    def _point(self, horizon: int) -> np.ndarray:
        memory = self.history_.shape[1]
        h = np.arange(horizon)[None, :]
        at = memory - self.m_[:, None] + h % self.m_[:, None]  # the same phase, last cycle
        return np.take_along_axis(self.history_, at[:, :, None], axis=1)

    def _widths(self, horizon: int) -> np.ndarray:
        k = np.arange(horizon)[None, :] // self.m_[:, None]  # completed cycles before h
        return np.sqrt(k + 1.0)


class Drift(_Baseline):
    """Random walk with the average historical change as drift."""

    family = "drift"

    def __init__(self, coverage: float = 0.9) -> None:
        self.coverage = coverage

    def _estimate(self, values: np.ndarray) -> None:
        first = values[np.arange(len(self.n_)), values.shape[1] - self.n_]
        self.slope_ = (values[:, -1] - first) / np.maximum(self.n_ - 1, 1)[:, None]

    def _residuals(self, values: np.ndarray) -> np.ndarray:
        return np.diff(values, axis=1) - self.slope_[:, None, :]

    def _point(self, horizon: int) -> np.ndarray:
        steps = np.arange(1, horizon + 1)[None, :, None]
        return self.history_[:, -1:] + steps * self.slope_[:, None, :]

    def _widths(self, horizon: int) -> np.ndarray:
        h = np.arange(1, horizon + 1)[None, :]
        return np.sqrt(h * (1 + h / np.maximum(self.n_ - 1, 1)[:, None]))
