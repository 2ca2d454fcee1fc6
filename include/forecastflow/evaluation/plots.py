"""Figures people would rather look at than read: history with forecast and interval band,
and forecast-vs-actual for every backtest window. Matplotlib with the Agg backend (no screen)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecastflow.data.series import DATE, SERIES
from forecastflow.models.base import Forecast

MAX_PANELS = 6


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _keys(frame: pd.DataFrame) -> list[tuple[str | None, str]]:
    series = (list(frame.index.get_level_values(SERIES).unique()[:MAX_PANELS])
              if isinstance(frame.index, pd.MultiIndex) else [None])
    return [(s, t) for s in series for t in frame.columns][:MAX_PANELS]


def _panels(keys: list[tuple[str | None, str]]):
    plt = _pyplot()
    fig, axes = plt.subplots(len(keys), 1, figsize=(9, 2.6 * len(keys)), squeeze=False)
    return fig, axes[:, 0]


def _title(ax: object, sid: str | None, target: str) -> None:
    ax.set_title(" / ".join(str(k) for k in (sid, target) if k is not None), fontsize=9)


def _save(fig: object, path: str | Path, title: str) -> Path:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)
    return path


def plot_forecast(history: pd.DataFrame, forecast: Forecast, path: str | Path,
                  title: str = "", last: int = 120) -> Path:
    """History (last ``last`` periods), point forecast and interval band; one panel per
    target (and per series, first few)."""
    keys = _keys(forecast.mean)
    fig, axes = _panels(keys)
    for ax, (sid, target) in zip(axes, keys, strict=True):
        hist = history.xs(sid, level=SERIES) if sid is not None else history
        mean, lower, upper = (f.xs(sid, level=SERIES) if sid is not None else f
                              for f in (forecast.mean, forecast.lower, forecast.upper))
        ax.plot(hist.index[-last:], hist[target].iloc[-last:], color="black", lw=1,
                label="history")
        ax.plot(mean.index, mean[target], color="tab:blue", lw=1.5, label="forecast")
        ax.fill_between(mean.index, lower[target], upper[target], color="tab:blue", alpha=0.25,
                        label=f"{forecast.coverage:.0%} interval")
        _title(ax, sid, target)
        ax.legend(loc="upper left", fontsize=7)
    return _save(fig, path, title)


def plot_backtest(predictions: pd.DataFrame, history: pd.DataFrame, path: str | Path,
                  title: str = "") -> Path:
    """Forecast vs actual for every backtest window (long ``predictions`` from a backtest)."""
    keys = _keys(history)
    fig, axes = _panels(keys)
    first_cutoff = pd.Timestamp(predictions["cutoff"].min())
    for ax, (sid, target) in zip(axes, keys, strict=True):
        hist = history.xs(sid, level=SERIES) if sid is not None else history
        span = hist[hist.index >= first_cutoff - (hist.index[-1] - first_cutoff)]
        ax.plot(span.index, span[target], color="black", lw=1, label="actual")
        sel = predictions[predictions["target"] == target]
        if sid is not None:
            sel = sel[sel[SERIES] == sid]
        for window, part in sel.groupby("window"):
            ax.plot(part[DATE], part["forecast"], lw=1.2, label=f"window {window}")
            ax.fill_between(part[DATE], part["lower"], part["upper"], alpha=0.15)
        _title(ax, sid, target)
        ax.legend(loc="upper left", fontsize=6, ncol=4)
    return _save(fig, path, title)


def plot_wins(wins: dict[str, int], path: Path, title: str) -> Path:
    """A bar per family: how many series the per-series choice gives it."""
    plt = _pyplot()
    names = sorted(wins, key=lambda k: -wins[k])
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    ax.barh(names[::-1], [wins[n] for n in names[::-1]], color="#4c72b0")
    for i, name in enumerate(names[::-1]):
        ax.text(wins[name], i, f" {wins[name]}", va="center", fontsize=9)
    ax.set_xlabel("series")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
