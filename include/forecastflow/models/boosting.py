"""Gradient boosting (scikit-learn HistGradientBoostingRegressor) on lag features.

Strategy (documented in README):

- Each series is divided by its mean absolute training level, so one *global* model can learn
  across series of different sizes (``global_model=True``; ``False`` fits one model per series).
- ``differencing=1`` models period-to-period changes: trees cannot extrapolate a trend, but
  they can repeat a typical change. ``differencing="seasonal"`` (or any lag d) models
  ``z[t] - z[t-d]``: the trees learn corrections to seasonal naive.
- Features at time t use only values before t: lags, rolling means of the last ``windows``
  values, the position in the season, and exogenous values at t.
- Multi-step forecasts are **recursive**: each prediction is fed back as the next lag.
- Intervals are **split-conformal**: a second model fitted without the last ``calibration``
  periods forecasts them recursively from every origin in that tail; the ``coverage`` quantile
  of absolute errors per step (pooled across series on the scaled axis) gives the half-width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecastflow.data.series import SERIES, period_ordinals
from forecastflow.models.base import FitError, Forecaster, ModelError, check_finite_forecast


@dataclass
class _Series:
    values: np.ndarray  # original scale
    positions: np.ndarray  # season position of each timestamp
    exog: np.ndarray | None
    scale: float


def lag_features(u: np.ndarray, rows: np.ndarray, lags: np.ndarray,
                 windows: np.ndarray) -> np.ndarray:
    """Features for target rows ``rows`` of ``u`` built only from ``u[:t]`` for each ``t``."""
    cols = [u[rows[:, None] - lags[None, :]]]
    if len(windows):
        csum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(u))])
        cols.append(np.stack([(csum[rows] - csum[rows - w]) / w for w in windows], axis=1))
    return np.concatenate(cols, axis=1)


def tail_features(tails: np.ndarray, lags: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Features for the next step of each row of ``tails`` (histories aligned on the right)."""
    n = tails.shape[1]
    cols = [tails[:, n - lags]]
    cols += [tails[:, n - w:].mean(axis=1, keepdims=True) for w in windows]
    return np.concatenate(cols, axis=1)


class GradientBoosting(Forecaster):
    family = "gradient_boosting"

    def __init__(
        self,
        lags: int | list[int] | None = None,
        windows: list[int] | None = None,
        differencing: int | str = 1,
        learning_rate: float = 0.05,
        max_iter: int = 200,
        max_leaf_nodes: int = 15,
        max_depth: int | None = None,
        min_samples_leaf: int = 10,
        l2_regularization: float = 0.0,
        global_model: bool = True,
        season_length: int | None = None,
        calibration: int | None = None,
        random_state: int = 0,
        coverage: float = 0.9,
    ) -> None:
        self.lags = lags
        self.windows = windows
        self.differencing = differencing
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.global_model = global_model
        self.season_length = season_length
        self.calibration = calibration
        self.random_state = random_state
        self.coverage = coverage

    @property
    def capabilities(self) -> dict[str, bool]:  # type: ignore[override]
        return {"multivariate": False, "exogenous": True, "panel": bool(self.global_model),
                "intervals": True}

    # Set-up ------------------------------------------------------------------------------

    def _settings(self) -> tuple[np.ndarray, np.ndarray, int]:
        m = max(int(self.season_length or 1), 1)
        if self.differencing == "seasonal":
            self.d_ = m
        elif isinstance(self.differencing, (int, np.integer)) and self.differencing >= 0:
            self.d_ = int(self.differencing)
        else:
            raise ModelError(f"differencing must be 0, 1, another lag or 'seasonal', "
                             f"got {self.differencing!r}")
        if self.lags is None:
            lags = np.arange(1, max(m, 4) + 1)
        elif isinstance(self.lags, (int, np.integer)):
            if self.lags < 1:
                raise ModelError(f"lags must be >= 1, got {self.lags}")
            lags = np.arange(1, int(self.lags) + 1)
        else:
            lags = np.array(sorted({int(v) for v in self.lags}))
            if lags.min() < 1:
                raise ModelError(f"lags must be >= 1, got {self.lags}")
        windows = np.array(self.windows if self.windows is not None else
                           sorted({w for w in (3, m) if w > 1}), dtype=int)
        return lags, windows, m

    def _split(self, y: pd.DataFrame, X: pd.DataFrame | None) -> dict[str, _Series]:
        if isinstance(y.index, pd.MultiIndex):
            groups = {str(k): g.droplevel(SERIES) for k, g in y.groupby(level=SERIES, sort=False)}
            xgroups = ({} if X is None else
                       {str(k): g.droplevel(SERIES) for k, g in X.groupby(level=SERIES,
                                                                           sort=False)})
        else:
            groups, xgroups = {"__single__": y}, ({} if X is None else {"__single__": X})
        out = {}
        for sid, frame in groups.items():
            values = frame.iloc[:, 0].to_numpy(dtype=float)
            scale = float(np.mean(np.abs(values)))
            ordinals = period_ordinals(pd.DatetimeIndex(frame.index), self.freq_)
            out[sid] = _Series(values, ordinals % self.m_,
                               None if X is None else xgroups[sid].to_numpy(dtype=float),
                               scale if scale > 0 else 1.0)
        return out

    def _transformed(self, s: _Series) -> np.ndarray:
        z = s.values / s.scale
        d = self.d_
        if d:
            return np.concatenate([np.full(d, np.nan), z[d:] - z[:-d]])
        return z

    @property
    def _need(self) -> int:
        return int(max(self.lags_.max(), self.windows_.max() if len(self.windows_) else 0))

    def _design(self, series: dict[str, _Series], cut: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Training matrix over all series, leaving out the last ``cut`` periods of each."""
        features, targets = [], []
        start = self.d_ + self._need
        for s in series.values():
            u = self._transformed(s)
            end = len(u) - cut
            if end <= start:
                continue
            rows = np.arange(start, end)
            parts = [lag_features(u, rows, self.lags_, self.windows_), s.positions[rows, None]]
            if s.exog is not None:
                parts.append(s.exog[rows])
            features.append(np.concatenate(parts, axis=1))
            targets.append(u[rows])
        if not features:
            need = start + 1 + cut
            raise FitError(f"gradient_boosting needs more than {need} observations per series "
                           f"for lags {self.lags_.tolist()}")
        return np.concatenate(features), np.concatenate(targets)

    def _regressor(self) -> object:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            learning_rate=self.learning_rate, max_iter=int(self.max_iter),
            max_leaf_nodes=int(self.max_leaf_nodes),
            max_depth=None if self.max_depth is None else int(self.max_depth),
            min_samples_leaf=int(self.min_samples_leaf),
            l2_regularization=self.l2_regularization, early_stopping=False,
            random_state=self.random_state)

    # Fit ---------------------------------------------------------------------------------

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        self.lags_, self.windows_, self.m_ = self._settings()
        series = self._split(y, X)
        # The recursion needs d + max(lag, window) past values of every series.
        short = {sid: len(s.values) for sid, s in series.items()
                 if len(s.values) <= self._need + self.d_}
        if short:
            raise FitError(f"gradient_boosting needs more than {self._need + self.d_} "
                           f"observations per series (lags {self.lags_.tolist()}, "
                           f"differencing {self.d_}); too short: {dict(list(short.items())[:5])}")
        features, target = self._design(series)
        self.regressor_ = self._regressor().fit(features, target)
        self.widths_ = self._calibrate(series)
        # Keep only the tails needed to continue the recursion.
        keep = self._need + self.d_ + 1
        self.series_ = {sid: _Series(s.values[-keep:], s.positions[-keep:], None, s.scale)
                        for sid, s in series.items()}
        self.fit_info_ = {"converged": True, "warnings": [], "rows": len(target)}

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        # The trees, interval widths and per-series scales stay; the lag tails move.
        # (Forecaster.update has checked that y holds exactly the fitted series.)
        keep = self._need + self.d_ + 1
        tails = self._split(y, X)
        self.series_ = {sid: _Series(tails[sid].values[-keep:], tails[sid].positions[-keep:],
                                     None, old.scale) for sid, old in self.series_.items()}

    def _calibrate(self, series: dict[str, _Series]) -> np.ndarray:
        # The calibration tail is sized on the typical series; series too short to leave
        # training data before it are left out of calibration only.
        lengths = np.array([len(s.values) for s in series.values()])
        c = self.calibration or max(2 * self.m_, 12)
        c = min(c, int(np.median(lengths) - self.d_ - self._need) // 2)
        if c < 2:
            raise FitError(f"gradient_boosting: series of median length {np.median(lengths):.0f}"
                           f" are too short to calibrate intervals (lags "
                           f"{self.lags_.tolist()}, differencing {self.d_})")
        usable = {sid: s for sid, s in series.items()
                  if len(s.values) - c > self._need + self.d_}
        features, target = self._design(usable, cut=c)
        model = self._regressor().fit(features, target)
        # Every origin of every series recursed at once: one prediction per step for all.
        states, exogs, actuals = [], [], []
        for s in usable.values():
            n = len(s.values)
            origins = np.arange(n - c, n)  # forecast from the end of index origin - 1
            states += [self._state(s, o) for o in origins]
            if s.exog is not None:
                exogs.append(np.stack([np.vstack([s.exog[o:o + c], np.repeat(
                    s.exog[-1:], max(0, o + c - n), 0)]) for o in origins]))
            actual = np.full((c, c), np.nan)  # (origin, step): NaN past the series' end
            for i, o in enumerate(origins):
                actual[i, :n - o] = s.values[o:] / s.scale
            actuals.append(actual)
        z = self._recurse(model, states, c, np.concatenate(exogs) if exogs else None)
        gaps = np.abs(np.concatenate(actuals) - z)
        errors = [column[np.isfinite(column)] for column in gaps.T]
        widths = []
        for errs in errors:
            errs_arr = np.sort(np.asarray(errs))
            k = min(len(errs_arr) - 1, math.ceil((len(errs_arr) + 1) * self.coverage) - 1)
            widths.append(errs_arr[max(k, 0)])
        return np.maximum.accumulate(np.asarray(widths))

    # Recursion ---------------------------------------------------------------------------

    def _state(self, s: _Series, origin: int) -> tuple[np.ndarray, np.ndarray, int]:
        """History tail of the transformed series before ``origin``, the last ``d`` levels
        (scaled) and the season position of the last observation."""
        u = self._transformed(s)[:origin]
        levels = s.values[origin - self.d_:origin] / s.scale
        return u[-self._need:], levels, int(s.positions[origin - 1])

    def _recurse(self, model: object, states: list[tuple[np.ndarray, float, int]],
                 horizon: int, exog: np.ndarray | None) -> np.ndarray:
        tails = np.stack([st[0] for st in states])
        levels = np.stack([st[1] for st in states])  # (rows, d): oldest first
        position = np.array([st[2] for st in states])
        out = np.empty((len(states), horizon))
        for h in range(horizon):
            position = (position + 1) % self.m_
            parts = [tail_features(tails, self.lags_, self.windows_), position[:, None]]
            if exog is not None:
                parts.append(exog[:, h])
            u_hat = model.predict(np.concatenate(parts, axis=1))
            if self.d_:
                z_hat = levels[:, 0] + u_hat  # z[t] = z[t-d] + u[t]
                levels = np.concatenate([levels[:, 1:], z_hat[:, None]], axis=1)
            else:
                z_hat = u_hat
            out[:, h] = z_hat
            tails = np.concatenate([tails[:, 1:], u_hat[:, None]], axis=1)
        return out

    def _predict(self, horizon: int, X: pd.DataFrame | None,
                 index: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sids = list(self.series_)
        states = [self._state(self.series_[sid], len(self.series_[sid].values)) for sid in sids]
        exog = None
        if X is not None:
            values = X.to_numpy(dtype=float)
            exog = values.reshape(len(sids), horizon, -1)
        z = self._recurse(self.regressor_, states, horizon, exog)
        scales = np.array([self.series_[sid].scale for sid in sids])[:, None]
        widths = self._widths(horizon)[None, :]
        mean, half = z * scales, widths * scales
        check_finite_forecast(self.family, mean)
        # Rows follow the forecast index: series-major, then step.
        return (mean.reshape(-1, 1), (mean - half).reshape(-1, 1), (mean + half).reshape(-1, 1))

    def _widths(self, horizon: int) -> np.ndarray:
        c = len(self.widths_)
        if horizon <= c:
            return self.widths_[:horizon]
        extra = self.widths_[-1] * np.sqrt(np.arange(c + 1, horizon + 1) / c)
        return np.concatenate([self.widths_, extra])
