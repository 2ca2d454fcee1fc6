"""The Theta method: simple exponential smoothing with drift (Hyndman & Billah, 2003) on the
series deseasonalized when a seasonality test says so.

Fitting, for every series of length ``n`` (all series of a panel at once, as arrays):

1. Seasonality test at lag ``m = season_length``: ``|r_m| > q * sqrt((1 + 2 sum_{k<m} r_k^2) / n)``
   with ``q`` the normal quantile of ``seasonality_level`` (90% by default, as the original
   M3 method). If seasonal, the series is divided by classical multiplicative seasonal indices
   (centred moving average ratios; strictly positive series only, else additive indices).
2. ``b0``: the slope of a least-squares line on time (the theta = 0 line).
3. ``alpha``: the SES smoothing parameter that minimizes the one-step squared error (a grid,
   then a golden-section search around its best point).

The forecast ``h`` steps ahead is the SES level plus ``b0 / 2 * (h - 1 + 1 / alpha - (1 -
alpha)^n / alpha)``, reseasonalized; intervals are those of SES (the equivalent ARIMA(0,1,1):
``sigma^2 (1 + alpha^2 (h - 1))``) around it. :meth:`update` moves the level through new
observations with ``alpha``, ``b0`` and the seasonal indices unchanged.

A panel is one ``(series, time)`` matrix, each series from its own first observation (ragged
ends padded), and every step above is array code over the series: thousands of series fit
in about the time of a few. The fitted state is one array per parameter (series in the
order of ``last_``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastflow.data.series import DATE, SERIES
from forecastflow.models.base import (
    FitError,
    Forecaster,
    ModelError,
    check_finite_forecast,
    normal_quantile,
)

GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
ALPHA_BOUNDS = (0.01, 0.99)


class Theta(Forecaster):
    """Theta method; ``deseasonalize``: ``auto`` (test), ``true`` or ``false``. Fits one
    series or every series of a panel at once."""

    family = "theta"
    capabilities = {"multivariate": False, "exogenous": False, "panel": True,
                    "intervals": True}

    def __init__(self, season_length: int | None = None, deseasonalize: bool | str = "auto",
                 seasonality_level: float = 0.9, coverage: float = 0.9) -> None:
        self.season_length = season_length
        self.deseasonalize = deseasonalize
        self.seasonality_level = seasonality_level
        self.coverage = coverage

    # Fitting -------------------------------------------------------------------------------

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        values, n, ids = series_matrix(y)
        short = n < 3
        if short.any():
            raise FitError(f"theta needs at least 3 observations per series; "
                           f"{_named(ids, short)} have fewer")
        m = int(self.season_length or 1)
        seasonal = self._seasonal(values, n, ids)
        self.multiplicative_ = np.nanmin(values, axis=1) > 0
        self.indices_ = (seasonal_indices(values, m, seasonal, self.multiplicative_)
                         if m > 1 else None)
        adjusted = self._adjust(values)
        self.b0_ = _slopes(adjusted, n)
        self.alpha_ = _best_alpha(adjusted, n)
        self.level_, sse = ses(adjusted, n, self.alpha_)
        self.sigma_ = np.sqrt(sse / np.maximum(n - 1, 1))
        self.n_ = n
        self.fit_info_ = {"converged": True, "warnings": [],
                          "seasonal_series": int(seasonal.sum()), "series": len(n)}
        if len(n) == 1:
            self.fit_info_.update(seasonal=bool(seasonal[0]), alpha=float(self.alpha_[0]))

    def _seasonal(self, values: np.ndarray, n: np.ndarray, ids: list[str]) -> np.ndarray:
        """Which series are deseasonalized (boolean per series)."""
        m = int(self.season_length or 1)
        if self.deseasonalize not in ("auto", True, False):
            raise ModelError(f"theta deseasonalize must be auto, true or false, got "
                             f"{self.deseasonalize!r}")
        if m <= 1 or self.deseasonalize is False:
            return np.zeros(len(n), dtype=bool)
        eligible = n >= 2 * m + 1
        if self.deseasonalize is True:
            if not eligible.all():
                raise ModelError(f"theta: deseasonalize needs two full cycles of {m} "
                                 f"({2 * m + 1} observations); {_named(ids, ~eligible)} "
                                 "have fewer")
            return eligible
        return eligible & seasonality_test(values, n, m, self.seasonality_level)

    def _adjust(self, values: np.ndarray, start: np.ndarray | int = 0) -> np.ndarray:
        if self.indices_ is None:
            return values
        season = _season(self.indices_, values.shape[1], start)
        mult = np.broadcast_to(self.multiplicative_[:, None], season.shape)
        # Additive rows' indices may be 0: divide only the multiplicative ones.
        return np.divide(values, season, out=values - season, where=mult)

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        values, n, ids = series_matrix(y)
        order = pd.Index(ids).get_indexer(list(self.last_)) if isinstance(
            self.last_, dict) else np.array([0])
        values, n = values[order], n[order]
        self.level_, _ = ses(self._adjust(values), n, self.alpha_)
        self.n_ = n

    # Forecasting ---------------------------------------------------------------------------

    def _predict(self, horizon: int, X: pd.DataFrame | None,
                 index: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = np.arange(1, horizon + 1, dtype=float)[None, :]
        a, n = self.alpha_[:, None], self.n_[:, None]
        drift = self.b0_[:, None] / 2.0 * (h - 1 + 1 / a - (1 - a) ** n / a)
        mean = self.level_[:, None] + drift
        half = normal_quantile(self.coverage) * self.sigma_[:, None] * np.sqrt(
            1 + a ** 2 * (h - 1))
        out = []
        for v in (mean, mean - half, mean + half):
            if self.indices_ is not None:
                season = _season(self.indices_, horizon, self.n_)
                v = np.where(self.multiplicative_[:, None], v * season, v + season)
            out.append(v.reshape(-1, 1))
        check_finite_forecast(self.family, out[0])
        return out[0], np.minimum(out[1], out[2]), np.maximum(out[1], out[2])


# Array code over series ------------------------------------------------------------------

def series_matrix(y: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The first target as a ``(series, time)`` matrix, each row from its series' first
    observation and NaN after its last; the lengths; the series ids (first-seen order)."""
    raw = y.to_numpy(dtype=float)[:, 0]
    if not isinstance(y.index, pd.MultiIndex):
        return raw[None, :], np.array([len(raw)]), ["_"]
    codes, ids = pd.factorize(y.index.get_level_values(SERIES).astype(str))
    order = np.lexsort((y.index.get_level_values(DATE).to_numpy(), codes))
    codes = codes[order]
    n = np.bincount(codes, minlength=len(ids))
    starts = np.r_[0, np.cumsum(n)[:-1]]
    out = np.full((len(ids), int(n.max())), np.nan)
    out[codes, np.arange(len(codes)) - starts[codes]] = raw[order]
    return out, n, [str(i) for i in ids]


def seasonality_test(values: np.ndarray, n: np.ndarray, m: int, level: float) -> np.ndarray:
    """The autocorrelation test at lag ``m`` for every row (NaN padding ignored)."""
    centred = np.nan_to_num(values - np.nanmean(values, axis=1, keepdims=True))
    denom = np.einsum("ij,ij->i", centred, centred)
    acf = np.stack([np.einsum("ij,ij->i", centred[:, k:], centred[:, :-k])
                    for k in range(1, m + 1)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acf = acf / denom[:, None]
        limit = normal_quantile(level) * np.sqrt((1 + 2 * np.sum(acf[:, :-1] ** 2, axis=1))
                                                 / n)
        return (denom > 0) & (np.abs(acf[:, -1]) > limit)


def seasonal_indices(values: np.ndarray, m: int, seasonal: np.ndarray,
                     multiplicative: np.ndarray) -> np.ndarray:
    """Classical (centred moving average) seasonal indices, ``(series, m)``: ratios for
    ``multiplicative`` rows, differences otherwise; neutral for rows not ``seasonal``."""
    neutral = np.where(multiplicative[:, None], 1.0, 0.0) * np.ones((1, m))
    if not seasonal.any():
        return neutral
    rows = values[seasonal]
    weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    trend = np.lib.stride_tricks.sliding_window_view(rows, len(weights), axis=1) @ weights
    offset = (len(weights) - 1) // 2
    part = rows[:, offset:offset + trend.shape[1]]
    mult = multiplicative[seasonal][:, None]
    phase = (np.arange(trend.shape[1]) + offset) % m
    with np.errstate(divide="ignore", invalid="ignore"):  # the other branch is discarded
        ratio = np.where(mult, part / trend, part - trend)
        raw = np.stack([np.nanmean(ratio[:, phase == k], axis=1) for k in range(m)], axis=1)
        mean = raw.mean(axis=1, keepdims=True)
        neutral[seasonal] = np.where(mult, raw / mean, raw - mean)
    return neutral


def _season(indices: np.ndarray, length: int, start: np.ndarray | int) -> np.ndarray:
    """Each row's seasonal index for ``length`` periods from position ``start``."""
    m = indices.shape[1]
    phase = (np.asarray(start).reshape(-1, 1) + np.arange(length)[None, :]) % m
    return np.take_along_axis(indices, np.broadcast_to(phase, (len(indices), length)), axis=1)


def _slopes(values: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Least-squares slope on time of every row (its first ``n`` values)."""
    t = np.arange(values.shape[1], dtype=float)[None, :] - (n[:, None] - 1) / 2.0
    live = np.arange(values.shape[1])[None, :] < n[:, None]
    centred = np.where(live, values - np.nanmean(values, axis=1, keepdims=True), 0.0)
    return np.sum(np.where(live, t, 0.0) * centred, axis=1) / np.sum(
        np.where(live, t * t, 0.0), axis=1)


def ses(values: np.ndarray, n: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Final level and one-step squared error of simple exponential smoothing for every row
    (the level starts at the first value); ``alpha`` broadcasts against the rows (one per
    row, or a ``(rows, k)`` grid)."""
    alpha = np.asarray(alpha, dtype=float)
    shape = np.broadcast_shapes(alpha.shape, (len(n),) + (1,) * (alpha.ndim - 1))
    level = np.broadcast_to(values[:, 0].reshape((-1,) + (1,) * (alpha.ndim - 1)),
                            shape).copy()
    sse = np.zeros(shape)
    live_to = n.reshape((-1,) + (1,) * (alpha.ndim - 1))
    for t in range(1, values.shape[1]):
        x = values[:, t].reshape(live_to.shape)
        error = np.where(t < live_to, x - level, 0.0)
        sse += error * error
        level += alpha * error
    return level, sse


def _best_alpha(values: np.ndarray, n: np.ndarray, grid: int = 25, steps: int = 20,
                ) -> np.ndarray:
    """Per row, the ``alpha`` in ``ALPHA_BOUNDS`` with the least SES squared error: the best
    point of a grid, then a golden-section search between its neighbours."""
    lo, hi = ALPHA_BOUNDS
    points = np.linspace(lo, hi, grid)
    best = np.argmin(ses(values, n, np.broadcast_to(points, (len(n), grid)))[1], axis=1)
    a, b = points[np.maximum(best - 1, 0)], points[np.minimum(best + 1, grid - 1)]
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = ses(values, n, c)[1], ses(values, n, d)[1]
    for _ in range(steps):
        left = fc < fd  # the minimum is in [a, d]
        a, b = np.where(left, a, c), np.where(left, d, b)
        new = np.where(left, b - GOLDEN * (b - a), a + GOLDEN * (b - a))
        fnew = ses(values, n, new)[1]
        c, d = np.where(left, new, d), np.where(left, c, new)
        fc, fd = np.where(left, fnew, fd), np.where(left, fc, fnew)
    return np.where(fc < fd, c, d)


def _named(ids: list[str], mask: np.ndarray) -> str:
    chosen = [ids[i] for i in np.flatnonzero(mask)]
    return f"{len(chosen)} series ({chosen[:5]})" if len(ids) > 1 else "the series"
