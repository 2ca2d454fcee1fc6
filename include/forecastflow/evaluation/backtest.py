"""Rolling-origin backtests: fit at each cutoff, forecast the next ``horizon`` periods.

One row per window (cutoff, train length, fit and predict seconds, every metric, status). A
window whose fit fails is recorded with its reason; the backtest fails only if all do.

With ``refit`` k > 1 (or 0: the first window only), the windows between refits move the last
fit's origin to their cutoff (``Forecaster.update``: the same parameters, filtered through
the new periods), which costs a filter pass instead of an estimation. A problem's YAML
omitting it gets every window refitted below ``REFIT_MAX_SERIES`` series and only the first
from there on: on large panels the estimation is the cost, and the metrics averaged over
thousands of series hardly move (the row's ``refit`` column says which windows were fitted).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecastflow.data.series import DATE, SERIES, SeriesData
from forecastflow.evaluation.metrics import METRICS, evaluate, seasonal_scale
from forecastflow.models.base import FitError, Forecaster, ModelError

log = logging.getLogger(__name__)

# Panels of at least this many series refit only at the first window unless the YAML says.
REFIT_MAX_SERIES = 1000

# Errors a window may fail with and still let the others run: a model that cannot fit these
# data, or data/parameters a model rejects. Anything else is a bug and propagates.
WINDOW_ERRORS = (FitError, ModelError, np.linalg.LinAlgError)


@dataclass(frozen=True)
class BacktestSpec:
    horizon: int
    windows: int = 3
    step: int | None = None
    mode: str = "expanding"
    window_length: int | None = None
    min_train: int = 10
    refit: int = 1  # fit every ``refit``-th window (0: the first only); others move origins

    @classmethod
    def from_problem(cls, problem: object, season: int, windows: int | None = None,
                     horizon: int | None = None, n_series: int = 1) -> BacktestSpec:
        """The problem's backtest; ``n_series`` (of the whole problem) decides an omitted
        ``refit``."""
        bt = problem.backtest
        refit = bt.refit
        if refit is None:
            refit = n_series < REFIT_MAX_SERIES
        return cls(horizon=horizon or problem.horizon, windows=windows or bt.windows,
                   step=problem.backtest_step(), mode=bt.mode, window_length=bt.window_length,
                   min_train=problem.min_train(season), refit=int(refit))

    def refits(self, window: int) -> bool:
        """Whether window ``window`` (0 = the oldest) is fitted rather than moved."""
        if self.mode == "sliding" or window == 0:
            return True  # a sliding window drops old periods: an update cannot
        return self.refit > 0 and window % self.refit == 0


@dataclass
class BacktestResult:
    windows: pd.DataFrame
    predictions: pd.DataFrame = field(repr=False)

    @property
    def ok(self) -> bool:
        return bool((self.windows["status"] == "ok").any())

    @property
    def n_failed(self) -> int:
        return int((self.windows["status"] != "ok").sum())

    def metrics(self) -> dict[str, float]:
        """Mean of each metric over the windows that succeeded."""
        good = self.windows[self.windows["status"] == "ok"]
        if good.empty:
            return {m: float("nan") for m in METRICS}
        return {m: float(good[m].mean()) for m in METRICS}


def cutoffs(data: SeriesData, spec: BacktestSpec) -> list[pd.Timestamp]:
    """Window cutoffs (last training timestamp), oldest first; the last window's test period
    ends at the data's end."""
    step = spec.step or spec.horizon
    offset = to_offset(data.freq)
    return [data.end - offset * (spec.horizon + step * (spec.windows - 1 - k))
            for k in range(spec.windows)]


def _train_test(data: SeriesData, cutoff: pd.Timestamp, spec: BacktestSpec) -> tuple[
        SeriesData, pd.DataFrame, pd.DataFrame | None]:
    train = data.until(cutoff)
    if spec.mode == "sliding" and spec.window_length:
        y = train.y.groupby(level=SERIES, sort=False).tail(spec.window_length) if (
            data.is_panel) else train.y.iloc[-spec.window_length:]
        X = None if train.X is None else train.X.loc[y.index]
        train = SeriesData(y, X, data.freq, data.season)
    dates = data.y.index.get_level_values(DATE) if data.is_panel else data.y.index
    end = cutoff + to_offset(data.freq) * spec.horizon
    mask = (dates > cutoff) & (dates <= end)
    test_y = data.y[mask]
    test_X = None if data.X is None else data.X[mask]
    return train, test_y, test_X


def _frequency_index(frame: pd.DataFrame, freq: str) -> pd.DataFrame:
    if not isinstance(frame.index, pd.MultiIndex):
        frame = frame.copy()
        frame.index = pd.DatetimeIndex(frame.index, freq=freq, name=DATE)
    return frame


def _window_model(model: Forecaster, previous: Forecaster | None, k: int, train: SeriesData,
                  spec: BacktestSpec) -> tuple[Forecaster, bool]:
    """Window ``k``'s model and whether it was fitted: ``previous`` moved to the window's
    cutoff when the spec says so and it can be (same series), else a fresh fit."""
    y = _frequency_index(train.y, train.freq)
    X = None if train.X is None else _frequency_index(train.X, train.freq)
    if previous is not None and not spec.refits(k):
        try:
            return previous.update(y, X), False
        except ModelError as err:
            log.info("window %d: the previous fit cannot be moved (%s); fitting", k, err)
    return model.clone().fit(y, X), True


def backtest(model: Forecaster, data: SeriesData, spec: BacktestSpec) -> BacktestResult:
    """Evaluate ``model`` (cloned at each window) on rolling origins over ``data``."""
    rows, predictions = [], []
    previous: Forecaster | None = None
    for k, cutoff in enumerate(cutoffs(data, spec)):
        train, test_y, test_X = _train_test(data, cutoff, spec)
        n_train = len(train.y) // max(len(train.series_ids), 1)
        row: dict[str, object] = {"window": k, "cutoff": cutoff, "train_length": n_train,
                                  "fit_seconds": np.nan, "predict_seconds": np.nan,
                                  **{m: np.nan for m in METRICS}, "status": "ok", "error": "",
                                  "converged": True, "warnings": "", "refit": True}
        try:
            if n_train < spec.min_train:
                raise ModelError(f"window {k} has {n_train} training periods; "
                                 f"min_train is {spec.min_train}")
            start = time.perf_counter()
            fitted, row["refit"] = _window_model(model, previous, k, train, spec)
            previous = fitted
            row["fit_seconds"] = time.perf_counter() - start
            start = time.perf_counter()
            fc = fitted.predict(spec.horizon, None if test_X is None else test_X.copy())
            row["predict_seconds"] = time.perf_counter() - start
            scale = seasonal_scale(train.y, data.season)
            row.update(evaluate(test_y, fc.mean, fc.lower, fc.upper, scale))
            info = getattr(fitted, "fit_info_", {}) or {}
            row["converged"] = bool(info.get("converged", True))
            row["warnings"] = "; ".join(info.get("warnings", []))
            long = fc.to_long()
            actual = test_y.rename_axis(columns="target").stack().rename("actual").reset_index()
            long = long.merge(actual, on=[c for c in actual.columns if c != "actual"], how="left")
            long.insert(0, "cutoff", cutoff)
            long.insert(0, "window", k)
            predictions.append(long)
        except WINDOW_ERRORS as err:
            row["status"] = "failed"
            row["error"] = f"{type(err).__name__}: {err}"[:500]
            log.warning("window %d (cutoff %s) failed: %s", k, cutoff.date(), row["error"])
        rows.append(row)
    table = pd.DataFrame(rows)
    preds = pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame()
    return BacktestResult(table, preds)
