"""Accuracy metrics on the original scale. Every function takes aligned frames (same index
and columns) and averages over series and targets, so panels and several targets reduce to one
number per metric."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastflow.data.series import SERIES

METRICS = ("rmse", "mae", "mape", "smape", "mase", "coverage")
LOWER_IS_BETTER = {"rmse": True, "mae": True, "mape": True, "smape": True, "mase": True}


def _codes(frame: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """Each row's series (0 for a single series) and the series in first-seen order."""
    if isinstance(frame.index, pd.MultiIndex):
        codes, uniques = pd.factorize(frame.index.get_level_values(SERIES))
        return codes, pd.Index(uniques)
    return np.zeros(len(frame), dtype=np.intp), pd.Index([None])


def _group_means(values: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """Per group (``codes``) and column, the mean of ``values`` (NaN propagates)."""
    counts = np.bincount(codes, minlength=n).astype(float)[:, None]
    sums = np.stack([np.bincount(codes, weights=values[:, j], minlength=n)
                     for j in range(values.shape[1])], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums / counts


def seasonal_scale(train: pd.DataFrame, season: int) -> pd.DataFrame:
    """In-sample MAE of the seasonal-naive forecast per series and target (the MASE
    denominator); falls back to lag 1 when a series is not longer than one season. One
    array pass over the rows (series in row order), however many series."""
    codes, uniques = _codes(train)
    order = np.argsort(codes, kind="stable")  # each series' rows together, in row order
    codes, values = codes[order], train.to_numpy(dtype=float)[order]
    lengths = np.bincount(codes, minlength=len(uniques))
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    lag = np.where(lengths > season, season, 1)[codes]
    rows = np.flatnonzero(np.arange(len(codes)) - starts[codes] >= lag)
    diffs = np.abs(values[rows] - values[rows - lag[rows]])
    valid = ~np.isnan(diffs)
    sums = np.stack([np.bincount(codes[rows], weights=np.where(valid[:, j], diffs[:, j], 0.0),
                                 minlength=len(uniques)) for j in range(values.shape[1])], 1)
    counts = np.stack([np.bincount(codes[rows], weights=valid[:, j], minlength=len(uniques))
                       for j in range(values.shape[1])], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = sums / counts  # NaN for a series without two points
    if isinstance(train.index, pd.MultiIndex):
        return pd.DataFrame(scale, index=uniques.rename(SERIES), columns=train.columns)
    return pd.DataFrame(scale, columns=train.columns)


def evaluate(actual: pd.DataFrame, mean: pd.DataFrame, lower: pd.DataFrame,
             upper: pd.DataFrame, scale: pd.DataFrame) -> dict[str, float]:
    """All metrics for one backtest window. ``scale`` comes from :func:`seasonal_scale`.

    Only forecast points with an actual count: in a ragged panel a series that ended before
    the window forecasts from its own last date, outside the window's test period."""
    common = mean.index.intersection(actual.index, sort=False)
    if len(common) < len(mean.index):
        mean, lower, upper = (f.loc[common] for f in (mean, lower, upper))
    actual = actual.loc[mean.index, mean.columns]
    err = (actual - mean).to_numpy(dtype=float)
    a = actual.to_numpy(dtype=float)
    f = mean.to_numpy(dtype=float)
    inside = (a >= lower.to_numpy(dtype=float)) & (a <= upper.to_numpy(dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        ape = np.where(a != 0, np.abs(err) / np.abs(a), np.nan)
        denom = np.abs(a) + np.abs(f)
        sape = np.where(denom > 0, 2.0 * np.abs(err) / denom, 0.0)
    # Per series/target MAE and RMSE, then averaged: series weigh equally.
    codes, keys = _codes(mean)
    mae = _group_means(np.abs(err), codes, len(keys))
    rmse = np.sqrt(_group_means(err**2, codes, len(keys)))
    panel = isinstance(mean.index, pd.MultiIndex)
    s = (scale.reindex(keys) if panel else scale.iloc[:1]).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mase = np.where(s > 0, mae / s, np.nan)
    return {
        "rmse": float(np.mean(rmse)),
        "mae": float(np.mean(mae)),
        "mape": float(np.nanmean(ape) * 100) if np.isfinite(ape).any() else float("nan"),
        "smape": float(np.mean(sape) * 100),
        "mase": float(np.nanmean(mase)) if np.isfinite(mase).any() else float("nan"),
        "coverage": float(np.mean(inside)),
    }


def score(metrics: dict[str, float], metric: str, coverage: float) -> float:
    """Smaller is better: the metric itself, or the distance to nominal coverage."""
    value = metrics.get(metric, float("nan"))
    if metric == "coverage":
        return abs(value - coverage)
    return value
