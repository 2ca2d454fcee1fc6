"""Accuracy metrics on the original scale. Every function takes aligned frames (same index
and columns) and averages over series and targets, so panels and several targets reduce to one
number per metric."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastflow.data.series import SERIES

METRICS = ("rmse", "mae", "mape", "smape", "mase", "coverage")
LOWER_IS_BETTER = {"rmse": True, "mae": True, "mape": True, "smape": True, "mase": True}


def _groups(frame: pd.DataFrame) -> list[pd.DataFrame]:
    if isinstance(frame.index, pd.MultiIndex):
        return [g for _, g in frame.groupby(level=SERIES, sort=False)]
    return [frame]


def seasonal_scale(train: pd.DataFrame, season: int) -> pd.DataFrame:
    """In-sample MAE of the seasonal-naive forecast per series and target (the MASE
    denominator); falls back to lag 1 when a series is not longer than one season."""
    def one(values: pd.DataFrame) -> pd.Series:
        m = season if len(values) > season else 1
        diffs = (values - values.shift(m)).abs().iloc[m:]
        return diffs.mean()

    if isinstance(train.index, pd.MultiIndex):
        return train.groupby(level=SERIES, sort=False).apply(one)
    return one(train).to_frame().T


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
    mase, rmse, mae = [], [], []
    for key, group in zip(_series_keys(mean), _groups(actual - mean), strict=True):
        g = group.to_numpy(dtype=float)
        s = scale.loc[key].to_numpy(dtype=float) if key is not None else scale.iloc[0].to_numpy(
            dtype=float)
        col_mae = np.mean(np.abs(g), axis=0)
        rmse.append(np.sqrt(np.mean(g**2, axis=0)))
        mae.append(col_mae)
        with np.errstate(divide="ignore", invalid="ignore"):
            mase.append(np.where(s > 0, col_mae / s, np.nan))
    return {
        "rmse": float(np.mean(rmse)),
        "mae": float(np.mean(mae)),
        "mape": float(np.nanmean(ape) * 100) if np.isfinite(ape).any() else float("nan"),
        "smape": float(np.mean(sape) * 100),
        "mase": float(np.nanmean(mase)) if np.isfinite(np.asarray(mase)).any() else float("nan"),
        "coverage": float(np.mean(inside)),
    }


def _series_keys(frame: pd.DataFrame) -> list[object]:
    if isinstance(frame.index, pd.MultiIndex):
        return list(frame.index.get_level_values(SERIES).unique())
    return [None]


def score(metrics: dict[str, float], metric: str, coverage: float) -> float:
    """Smaller is better: the metric itself, or the distance to nominal coverage."""
    value = metrics.get(metric, float("nan"))
    if metric == "coverage":
        return abs(value - coverage)
    return value
