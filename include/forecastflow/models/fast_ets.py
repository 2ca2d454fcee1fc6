"""``fast_ets``: automatic exponential smoothing for a whole panel at once.

The same choice as ``ets`` (error, trend, damping and season per series by AICc, as AutoETS
does), estimated by :mod:`forecastflow.models.ets_arrays`: every series of the panel is one row
of array code, so thousands of series fit in the time ``ets`` (statsmodels, one series at a
time) takes for a few dozen. The initial states are part of the search, as in AutoETS. The
intervals use the additive models' closed-form variance (relative to the forecast for
multiplicative errors, an approximation). The fitted state is a handful of arrays (series in
the order of ``last_``): the pickle grows by a few hundred bytes per series.
"""

from __future__ import annotations

from dataclasses import fields
from functools import partial

import numpy as np
import pandas as pd

from forecastflow.models import ets_arrays as engine
from forecastflow.models.base import (
    FitError,
    Forecaster,
    ModelError,
    check_finite_forecast,
    normal_quantile,
)
from forecastflow.models.theta import series_matrix


class FastEts(Forecaster):
    """ETS chosen per series by AICc, fitted for every series of a panel at once."""

    family = "fast_ets"
    capabilities = {"multivariate": False, "exogenous": False, "panel": True,
                    "intervals": True}

    def __init__(self, season_length: int | None = None, damped: bool | str = "auto",
                 max_iter: int = 200, coverage: float = 0.9) -> None:
        self.season_length = season_length
        self.damped = damped
        self.max_iter = max_iter
        self.coverage = coverage

    def candidates(self) -> list[engine.Spec]:
        if self.damped not in ("auto", True, False):
            raise ModelError(f"fast_ets damped must be auto, true or false, got "
                             f"{self.damped!r}")
        m = int(self.season_length or 1)
        out = engine.specs(positive=True, seasonal=m > 1)
        if self.damped != "auto":
            out = [s for s in out if not s.trend or s.damped == bool(self.damped)]
        return out

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        if int(self.max_iter) < 1:
            raise ModelError(f"fast_ets max_iter must be >= 1, got {self.max_iter!r}")
        values, n, ids = series_matrix(y)
        self.specs_ = self.candidates()
        m = max(int(self.season_length or 1), 1)
        self.state_ = _fit_parallel(values, n, m, self.specs_, int(self.max_iter))
        fallback = [ids[i] for i in np.flatnonzero(self.state_.fallback)]
        if len(fallback) == len(ids) and len(ids) > 1:
            raise FitError(f"fast_ets could not fit any of the {len(ids)} series, e.g. "
                           f"{fallback[:5]} (too short?)")
        warnings = [f"{len(fallback)} series too short or unfit for every ETS form are "
                    f"forecast as a random walk: {fallback[:10]}"] if fallback else []
        stopped = self.state_.converged
        unfinished = int(np.sum(~stopped)) if stopped is not None else 0
        if unfinished:
            warnings.append(f"{unfinished} of {len(ids)} series' searches stopped at max_iter "
                            f"{self.max_iter} (their best point so far is used)")
        self.fit_info_ = {"converged": unfinished == 0, "n_not_converged": unfinished,
                          "warnings": warnings, "chosen": self.chosen(),
                          "fallbacks": fallback}

    def chosen(self) -> dict[str, int]:
        """How many series each specification was chosen for."""
        names = [self.specs_[i].name for i in self.state_.spec]
        return {name: names.count(name) for name in sorted(set(names))}

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        values, n, ids = series_matrix(y)
        if isinstance(self.last_, dict):
            order = pd.Index(ids).get_indexer(list(self.last_))
            values, n = values[order], n[order]
        self.state_ = self.state_.moved(values, n)

    def _predict(self, horizon: int, X: pd.DataFrame | None,
                 index: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean, lower, upper = engine.forecast(self.state_, horizon,
                                             normal_quantile(self.coverage))
        out = [a.reshape(-1, 1) for a in (mean, lower, upper)]
        check_finite_forecast(self.family, out[0])
        return out[0], out[1], out[2]


# Below this many series one process is quicker than shipping rows to the pool.
PARALLEL_MIN_SERIES = 200


def _fit_parallel(values: np.ndarray, n: np.ndarray, m: int, specs: list[engine.Spec],
                  max_iter: int) -> engine.Fitted:
    """:func:`engine.fit_auto` on one chunk of rows per job of the fitting pool (array code
    runs on one core); results back in row order."""
    from forecastflow.models.parallel import jobs, map_chunks

    # Each job gets every k-th row by length: the same mix of lengths (balanced work).
    by_length, k = np.argsort(n, kind="stable"), max(jobs(), 1)
    order = np.concatenate([by_length[j::k] for j in range(k)])
    rows = [(values[i, :n[i]], int(n[i])) for i in order]
    parts = map_chunks(partial(_fit_rows, m=m, specs=specs, max_iter=max_iter), rows,
                       min_items=PARALLEL_MIN_SERIES, per_job=1)
    back = np.argsort(order, kind="stable")
    return engine.Fitted(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])[back]
                            for f in fields(engine.Fitted)})


def _fit_rows(rows: list[tuple[np.ndarray, int]], m: int, specs: list[engine.Spec],
              max_iter: int) -> list[engine.Fitted]:
    n = np.array([k for _, k in rows])
    values = np.full((len(rows), int(n.max())), np.nan)
    for i, (row, k) in enumerate(rows):
        values[i, :k] = row
    return [engine.fit_auto(values, n, m, specs, max_iter)]
