"""The one interface every forecaster shares.

- ``__init__`` stores hyperparameters only (``get_params`` reads them back).
- ``fit(y, X=None)``: ``y`` is a DataFrame of targets indexed by a regular DatetimeIndex (or by
  ``(series_id, date)`` for panel-capable models); ``X`` holds exogenous columns on that index.
- ``predict(horizon, X=None)`` returns a :class:`Forecast` (point, lower, upper at ``coverage``);
  models using exog need ``horizon`` future rows of ``X``.
- Fitted state ends in ``_``. Capabilities are declared in ``capabilities``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from forecastflow.data.series import DATE, SERIES
from forecastflow.errors import UserInputError
from forecastflow.models.compact import SeriesEnds


class ModelError(UserInputError):
    """Bad input to a model (shape, columns, horizon) or use before fit."""


class FitError(RuntimeError):
    """The model could not be fitted on this data (e.g. singular matrices)."""


@dataclass
class Forecast:
    """Point forecasts and interval bounds; frames share index (future dates, or
    ``(series_id, date)``) and columns (targets)."""

    mean: pd.DataFrame
    lower: pd.DataFrame
    upper: pd.DataFrame
    coverage: float

    @property
    def horizon(self) -> int:
        if isinstance(self.mean.index, pd.MultiIndex):
            return int(self.mean.groupby(level=SERIES).size().max())
        return len(self.mean)

    def to_long(self) -> pd.DataFrame:
        """One row per (series, target, date), sorted that way: ``forecast``, ``lower``,
        ``upper``, ``step`` (1 = first period ahead)."""
        return pd.DataFrame(self.long_columns())

    def long_columns(self) -> dict[str, np.ndarray]:
        """The columns of :meth:`to_long` as arrays. Plain array work: it is on the serving
        hot path."""
        index, n, k = self.mean.index, *self.mean.shape
        panel = isinstance(index, pd.MultiIndex)
        if not panel and index.is_monotonic_increasing and index.is_unique:
            return self._long_single()
        dates = index.get_level_values(DATE) if panel else index
        date_codes = np.repeat(pd.factorize(dates, sort=True)[0], k)
        target_codes = np.tile(np.arange(k), n)
        keys = [date_codes, target_codes]
        if panel:
            sids = np.repeat(index.get_level_values(SERIES).astype(str).to_numpy(), k)
            keys.append(pd.factorize(sids, sort=True)[0])
        order = np.lexsort(keys)  # last key first: series, target, date
        group = target_codes[order] if not panel else (
            keys[2][order] * k + target_codes[order])
        starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
        step = np.arange(n * k) - np.repeat(starts, np.diff(np.r_[starts, n * k])) + 1
        columns: dict[str, np.ndarray] = {}
        if panel:
            columns[SERIES] = sids[order]
        columns[DATE] = np.repeat(np.asarray(dates), k)[order]
        columns["target"] = np.asarray(self.mean.columns, dtype=object)[target_codes[order]]
        columns["step"] = step
        for name, frame in (("forecast", self.mean), ("lower", self.lower),
                            ("upper", self.upper)):
            columns[name] = frame.to_numpy(dtype=float).reshape(-1)[order]
        return columns

    def _long_single(self) -> dict[str, np.ndarray]:
        """``long_columns`` of one series on increasing distinct dates: target-major order."""
        n, k = self.mean.shape
        order = np.arange(n * k).reshape(n, k).T.ravel()  # row-major (date, target) cells
        columns: dict[str, np.ndarray] = {
            DATE: np.tile(np.asarray(self.mean.index), k),
            "target": np.repeat(np.asarray(self.mean.columns, dtype=object), n),
            "step": np.tile(np.arange(1, n + 1), k)}
        for name, frame in (("forecast", self.mean), ("lower", self.lower),
                            ("upper", self.upper)):
            columns[name] = frame.to_numpy(dtype=float).reshape(-1)[order]
        return columns


def normal_quantile(coverage: float) -> float:
    """Two-sided standard-normal multiplier for ``coverage`` (0.9 -> 1.645)."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + coverage / 2.0))


def future_index(last: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    """The next ``horizon`` dates after ``last`` (a fresh index object: callers may rename it;
    the calendar itself is computed once per origin, frequency and horizon)."""
    return _future_dates(pd.Timestamp(last), freq, horizon).copy()


@lru_cache(maxsize=1024)
def _future_dates(last: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    start = last + pd.tseries.frequencies.to_offset(freq)
    return pd.date_range(start, periods=horizon, freq=freq, name=DATE)


def column_index(columns: list[str] | pd.Index) -> pd.Index:
    """``pd.Index(columns)`` as a fresh object, built once per distinct tuple of names
    (building an index of strings is most of the cost of a small DataFrame)."""
    return _column_index(tuple(columns)).copy()


@lru_cache(maxsize=256)
def _column_index(columns: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(columns))


def panel_future_index(last: dict[str, pd.Timestamp], freq: str, horizon: int,
                       ) -> pd.MultiIndex:
    """The ``(series, date)`` index of the next ``horizon`` periods of every series (in the
    order of ``last``): one calendar per distinct last date, however many series."""
    codes, ends = pd.factorize(pd.DatetimeIndex(list(last.values())))
    calendars = [future_index(end, freq, horizon) for end in ends]
    table = calendars[0].append(calendars[1:]) if len(calendars) > 1 else calendars[0]
    at = (codes[:, None] * horizon + np.arange(horizon)[None, :]).ravel()
    sids = np.repeat(np.asarray(list(last), dtype=object), horizon)
    return pd.MultiIndex.from_arrays([sids, table.take(at).rename(DATE)],
                                     names=[SERIES, DATE])


class Forecaster:
    """Base class: input checks and index bookkeeping; subclasses implement ``_fit`` and
    ``_predict`` on plain arrays or frames."""

    family: ClassVar[str] = "base"
    capabilities: ClassVar[dict[str, bool]] = {
        "multivariate": False,
        "exogenous": False,
        "panel": False,
        "intervals": True,
    }
    # Models whose linear algebra is on small matrices (statsmodels' state-space filters):
    # BLAS threads only add overhead there, and on a busy machine they spin (an auto ARIMA
    # search measured 39 s with two threads beside other work, 5.7 s with one), so their
    # fit, update and predict run with one.
    single_threaded: ClassVar[bool] = False

    def __init__(self, coverage: float = 0.9) -> None:
        self.coverage = coverage

    # Parameters ------------------------------------------------------------------------

    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names()}

    def clone(self) -> Forecaster:
        """An unfitted copy with the same hyperparameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # Fitting ---------------------------------------------------------------------------

    def fit(self, y: pd.DataFrame, X: pd.DataFrame | None = None) -> Forecaster:
        if not 0.0 < self.coverage < 1.0:
            raise ModelError(f"coverage must be in (0, 1), got {self.coverage}")
        if isinstance(y, pd.Series):
            y = y.to_frame()
        if not isinstance(y, pd.DataFrame) or y.empty:
            raise ModelError(f"{self.family}: y must be a non-empty DataFrame, got {type(y)}")
        panel = isinstance(y.index, pd.MultiIndex)
        if panel and not self.capabilities["panel"]:
            raise ModelError(f"{self.family} fits one series; wrap panels in PerSeries")
        if y.shape[1] > 1 and not self.capabilities["multivariate"]:
            raise ModelError(f"{self.family} is univariate; got targets {list(y.columns)}")
        if X is not None and not self.capabilities["exogenous"]:
            X = None  # a model without exog support simply ignores them
        if X is not None and not X.index.equals(y.index):
            extra = X.index.difference(y.index)[:3].tolist()
            lacking = y.index.difference(X.index)[:3].tolist()
            raise ModelError(f"{self.family}: X index does not match y index (X has extra "
                             f"{extra}, lacks {lacking})")
        if y.isna().to_numpy().any():
            where = y.index[y.isna().any(axis=1)][:3].tolist()
            raise ModelError(f"{self.family}: y has missing values in "
                             f"{list(y.columns[y.isna().any()])} at {where}; validate the "
                             "data first")
        freq = getattr(y.index, "freq", None) if not panel else None
        self.freq_ = freq.freqstr if freq is not None else _index_freq(y.index, panel)
        if self.freq_ is None:
            raise ModelError(f"{self.family}: cannot tell the frequency of y's index")
        self.targets_ = list(y.columns)
        self.exog_ = None if X is None else list(X.columns)
        self.last_ = _ends(y)
        self.n_obs_ = len(y)
        with blas_threads(self.single_threaded):
            self._fit(y, X)
        return self

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        raise NotImplementedError

    # Updating --------------------------------------------------------------------------

    def update(self, y: pd.DataFrame, X: pd.DataFrame | None = None) -> Forecaster:
        """A copy whose state is moved to the end of ``y`` with the estimated parameters
        unchanged (no re-estimation): its forecasts start after ``y``'s last date.

        ``y`` is the whole history up to the new origin (the fitted periods and the new
        ones), with the fitted targets, series and exogenous columns; ``self`` is not changed.
        """
        if not hasattr(self, "targets_"):
            raise ModelError(f"{self.family}: call fit before update")
        if isinstance(y, pd.Series):
            y = y.to_frame()
        if list(y.columns) != self.targets_:
            raise ModelError(f"{self.family}: update needs targets {self.targets_}, got "
                             f"{list(y.columns)}")
        if y.isna().to_numpy().any():
            raise ModelError(f"{self.family}: update data have missing values")
        if self.exog_:
            if X is None or [c for c in self.exog_ if c not in X.columns]:
                raise ModelError(f"{self.family}: update needs exogenous columns {self.exog_}")
            X = X[self.exog_]
            if not X.index.equals(y.index):
                raise ModelError(f"{self.family}: update X index does not match y index")
        else:
            X = None
        ends = _ends(y)
        if isinstance(self.last_, dict) != isinstance(ends, dict):
            fitted = "a panel" if isinstance(self.last_, dict) else "one series"
            raise ModelError(f"{self.family}: fitted on {fitted}; update needs the same")
        if isinstance(self.last_, dict):
            if set(ends) != set(self.last_):
                raise ModelError(f"{self.family}: update needs the fitted series; new "
                                 f"{sorted(set(ends) - set(self.last_))[:5]}, missing "
                                 f"{sorted(set(self.last_) - set(ends))[:5]}")
            ends = SeriesEnds((sid, ends[sid]) for sid in self.last_)  # the fitted order
            early = [sid for sid in ends if ends[sid] < self.last_[sid]]
        else:
            early = ["(single series)"] if ends < self.last_ else []
        if early:
            raise ModelError(f"{self.family}: update data end before the fitted data for "
                             f"{early[:5]}")
        new = object.__new__(type(self))  # a shallow copy without the pickling hooks
        new.__dict__.update(self.__dict__)
        new.last_, new.n_obs_ = ends, len(y)
        with blas_threads(self.single_threaded):
            new._update(y, X)
        return new

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        raise ModelError(f"{self.family} cannot move its origin without refitting")

    # Forecasting -----------------------------------------------------------------------

    def predict(self, horizon: int, X: pd.DataFrame | None = None) -> Forecast:
        if not hasattr(self, "targets_"):
            raise ModelError(f"{self.family}: call fit before predict")
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ModelError(f"horizon must be a positive integer, got {horizon!r}")
        index = self.forecast_index(int(horizon))
        Xf = self._check_future_exog(int(horizon), X, index)
        with blas_threads(self.single_threaded):
            mean, lower, upper = self._predict(int(horizon), Xf, index)
        return forecast_frames(index, self.targets_, mean, lower, upper, self.coverage)

    def forecast_index(self, horizon: int) -> pd.Index:
        if isinstance(self.last_, dict):
            return panel_future_index(self.last_, self.freq_, horizon)
        return future_index(self.last_, self.freq_, horizon)

    def _check_future_exog(self, horizon: int, X: pd.DataFrame | None,
                           index: pd.Index) -> pd.DataFrame | None:
        if not self.exog_:
            return None
        if X is None:
            raise ModelError(f"{self.family} was fitted with exogenous columns {self.exog_}; "
                             f"predict needs {horizon} future rows of them")
        missing = [c for c in self.exog_ if c not in X.columns]
        if missing:
            raise ModelError(f"future exog lacks column(s) {missing}; expected {self.exog_}")
        if list(X.columns) != self.exog_:
            X = X[self.exog_]
        if X.index.equals(index):
            pass  # already the forecast rows, in order (as predict_frame passes them)
        elif isinstance(index, pd.MultiIndex):
            try:
                X = X.loc[index]
            except KeyError:
                lacking = index.difference(X.index)[:3].tolist()
                raise ModelError(f"future exog lacks rows for {lacking}") from None
        elif isinstance(X.index, pd.DatetimeIndex):
            # Dated rows are matched on the forecast dates, so history rows are skipped.
            missing = index.difference(X.index)
            if len(missing):
                raise ModelError(f"future exog has no rows for {len(missing)} forecast "
                                 f"date(s): {[str(d.date()) for d in missing[:5]]}")
            X = X.loc[index]
        else:
            if len(X) < horizon:
                raise ModelError(f"future exog has {len(X)} row(s); horizon {horizon} "
                                 f"needs {horizon}")
            X = X.iloc[:horizon]
        if _has_missing(X):
            where = X.index[X.isna().any(axis=1)][:3].tolist()
            raise ModelError(f"future exog has missing values in "
                             f"{list(X.columns[X.isna().any()])} at {where}")
        return X

    def _predict(self, horizon: int, X: pd.DataFrame | None,
                 index: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError


def forecast_frames(index: pd.Index, targets: list[str], mean: np.ndarray, lower: np.ndarray,
                    upper: np.ndarray, coverage: float) -> Forecast:
    """A :class:`Forecast` of float arrays on ``index`` with ``targets`` as columns."""
    frames = [pd.DataFrame(np.asarray(a, dtype=float), index=index,
                           columns=column_index(targets)) for a in (mean, lower, upper)]
    return Forecast(*frames, coverage=coverage)


def _has_missing(X: pd.DataFrame) -> bool:
    """Whether ``X`` has a missing value (numeric blocks checked on the array)."""
    values = X.to_numpy()
    if values.dtype.kind in "iub":
        return False
    if values.dtype.kind == "f":
        return bool(np.isnan(values).any())
    return bool(X.isna().to_numpy().any())


@cache
def _threadpools() -> Any:
    import scipy.linalg  # noqa: F401 - loads scipy's BLAS, which statsmodels' filters use
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # finding the loaded libraries (once) is the slow part


@contextmanager
def blas_threads(single: bool) -> Iterator[None]:
    """BLAS limited to one thread inside the block when ``single``."""
    if not single:
        yield
        return
    with _threadpools().limit(limits=1, user_api="blas"):
        yield


def _ends(y: pd.DataFrame) -> pd.Timestamp | dict[str, pd.Timestamp]:
    """Last date of a series, or of each series of a panel (first-seen order)."""
    if isinstance(y.index, pd.MultiIndex):
        ends = y.reset_index(level=DATE)[DATE].groupby(level=SERIES, sort=False).max()
        return SeriesEnds(zip(ends.index.astype(str), pd.DatetimeIndex(ends), strict=True))
    return pd.Timestamp(y.index[-1])


def _index_freq(index: pd.Index, panel: bool) -> str | None:
    """Frequency of a single index, or of the first panel series long enough to tell (the
    union of dates of series with different starts need not be ordered or regular)."""
    def infer(dates: pd.Index) -> str | None:
        if len(dates) < 3:
            return None
        freq = pd.DatetimeIndex(dates[:50], freq="infer").freq
        return None if freq is None else freq.freqstr

    if not panel:
        return infer(index)
    series = index.get_level_values(SERIES)
    dates = index.get_level_values(DATE)
    for sid in series.unique():
        freq = infer(dates[series == sid])
        if freq is not None:
            return freq
    return None


def check_finite_forecast(family: str, mean: np.ndarray) -> None:
    if not np.all(np.isfinite(mean)):
        raise FitError(f"{family} produced non-finite forecasts")
