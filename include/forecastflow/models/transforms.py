"""Target transforms with exact inverses, and the pipeline that wraps a model with one.

Transforms are fitted on the training data of each backtest window only (no statistic of the
future leaks in). Inverses:

- ``log``: ``exp``; being monotone, it maps interval bounds exactly.
- ``diff``: levels are the last observed level plus the cumulative sum of forecast changes.
  Bounds accumulate the per-step half-widths in quadrature (``sqrt(sum w_i^2)``), which is exact
  when the change forecasts' errors are independent (as for white-noise residuals).
- ``log-diff``: ``diff`` on the log scale, then ``exp``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastflow.data.series import DATE, SERIES
from forecastflow.models.base import Forecast, Forecaster, ModelError
from forecastflow.models.local import adapt

TRANSFORMS = ("none", "log", "diff", "log-diff")


def str_ids(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """Panel series ids as strings, as the models key their forecasts."""
    if frame is None or not isinstance(frame.index, pd.MultiIndex):
        return frame
    frame = frame.copy()
    frame.index = frame.index.set_levels(frame.index.levels[0].astype(str), level=0)
    return frame


class Transform:
    """A target transform; ``fit_transform`` remembers what ``inverse`` needs."""

    def __init__(self, kind: str = "none") -> None:
        if kind not in TRANSFORMS:
            raise ModelError(f"unknown transform {kind!r}; choose from {list(TRANSFORMS)}")
        self.kind = kind

    @property
    def uses_log(self) -> bool:
        return self.kind in ("log", "log-diff")

    @property
    def uses_diff(self) -> bool:
        return self.kind in ("diff", "log-diff")

    def fit_transform(self, y: pd.DataFrame) -> pd.DataFrame:
        z = str_ids(y.astype(float))
        if self.uses_log:
            bad = z.columns[(z <= 0).any()].tolist()
            if bad:
                where = z.index[(z[bad] <= 0).any(axis=1)][:3].tolist()
                raise ModelError(f"transform {self.kind!r} needs positive values; columns "
                                 f"{bad} have values <= 0 at {where}")
            z = np.log(z)
        if self.uses_diff:
            panel = isinstance(z.index, pd.MultiIndex)
            self.last_ = z.groupby(level=SERIES, sort=False).last() if panel else z.iloc[-1]
            self.first_ = z.groupby(level=SERIES, sort=False).head(1) if panel else z.iloc[:1]
            z = (z.groupby(level=SERIES, sort=False).diff() if panel else z.diff()).dropna()
        return z

    def transform_exog(self, X: pd.DataFrame | None) -> pd.DataFrame | None:
        """Exog rows aligned with the transformed targets (diff drops the first period)."""
        if X is None or not self.uses_diff:
            return X
        panel = isinstance(X.index, pd.MultiIndex)
        first = X.groupby(level=SERIES, sort=False).cumcount() == 0 if panel else (
            np.arange(len(X)) == 0)
        return X[~np.asarray(first)]

    def inverse(self, z: pd.DataFrame) -> pd.DataFrame:
        """Exact inverse of ``fit_transform`` for the training frame."""
        if self.uses_diff:
            panel = isinstance(z.index, pd.MultiIndex)
            z = pd.concat([self.first_, z])
            if panel:  # series in their original order (not sorted by id), dates ascending
                order = pd.Index(self.first_.index.get_level_values(SERIES))
                codes = order.get_indexer(z.index.get_level_values(SERIES))
                z = z.iloc[np.lexsort((z.index.get_level_values(DATE), codes))]
            else:
                z = z.sort_index()
            z = z.groupby(level=SERIES, sort=False).cumsum() if panel else z.cumsum()
        return np.exp(z) if self.uses_log else z

    def inverse_forecast(self, fc: Forecast) -> Forecast:
        if not isinstance(fc.mean.index, pd.MultiIndex):
            return self._inverse_single(fc)
        mean, lower, upper = fc.mean, fc.lower, fc.upper
        if self.uses_diff:
            panel = isinstance(mean.index, pd.MultiIndex)

            def accumulate(frame: pd.DataFrame) -> pd.DataFrame:
                return frame.groupby(level=SERIES, sort=False).cumsum() if panel else (
                    frame.cumsum())

            if panel:
                last = self.last_.reindex(mean.index.get_level_values(SERIES))
                last.index = mean.index
            else:
                last = pd.DataFrame([self.last_.to_numpy()] * len(mean), index=mean.index,
                                    columns=mean.columns)
            level = accumulate(mean) + last
            up = np.sqrt(accumulate((upper - mean) ** 2))
            down = np.sqrt(accumulate((mean - lower) ** 2))
            mean, lower, upper = level, level - down, level + up
        if self.uses_log:
            mean, lower, upper = np.exp(mean), np.exp(lower), np.exp(upper)
        return Forecast(mean, lower, upper, fc.coverage)

    def _inverse_single(self, fc: Forecast) -> Forecast:
        """``inverse_forecast`` of one series on arrays: the same operations in the same
        order as on the frames (cumulative sums down the steps), so the same numbers."""
        mean, lower, upper = (f.to_numpy(dtype=float) for f in (fc.mean, fc.lower, fc.upper))
        if self.uses_diff:
            level = np.cumsum(mean, axis=0) + self.last_.to_numpy(dtype=float)
            up = np.sqrt(np.cumsum((upper - mean) ** 2, axis=0))
            down = np.sqrt(np.cumsum((mean - lower) ** 2, axis=0))
            mean, lower, upper = level, level - down, level + up
        if self.uses_log:
            mean, lower, upper = np.exp(mean), np.exp(lower), np.exp(upper)
        if not self.uses_diff and not self.uses_log:
            return Forecast(fc.mean, fc.lower, fc.upper, fc.coverage)
        index, columns = fc.mean.index, fc.mean.columns
        return Forecast(*(pd.DataFrame(a, index=index, columns=columns)
                          for a in (mean, lower, upper)), fc.coverage)


class ForecastPipeline(Forecaster):
    """A model behind a target transform; adapts the model to panels and several targets."""

    family = "pipeline"

    def __init__(self, model: Forecaster, transform: str = "none") -> None:
        self.model = model
        self.transform = transform

    @property
    def capabilities(self) -> dict[str, bool]:  # type: ignore[override]
        return {"multivariate": True, "exogenous": self.model.capabilities["exogenous"],
                "panel": True, "intervals": True}

    @property
    def coverage(self) -> float:
        return self.model.coverage

    @property
    def fit_info_(self) -> dict[str, object]:
        return getattr(self.model_, "fit_info_", {"converged": True, "warnings": []})

    def _transformed(self, y: pd.DataFrame, X: pd.DataFrame | None,
                     ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        self.transform_ = Transform(self.transform)
        z = self.transform_.fit_transform(y)
        Xz = self.transform_.transform_exog(str_ids(X))
        if isinstance(z.index, pd.DatetimeIndex):
            z.index = pd.DatetimeIndex(z.index, freq=self.freq_, name=DATE)
            if Xz is not None:
                Xz.index = z.index
        return z, Xz

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        z, Xz = self._transformed(y, X)
        self.model_ = adapt(self.model.clone(), z).fit(z, Xz)

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        # The transform's state (the last levels for diff) follows the data; the model's
        # estimated parameters do not change.
        z, Xz = self._transformed(y, X)
        self.model_ = self.model_.update(z, Xz)

    def predict(self, horizon: int, X: pd.DataFrame | None = None) -> Forecast:
        if not hasattr(self, "model_"):
            raise ModelError("pipeline: call fit before predict")
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ModelError(f"horizon must be a positive integer, got {horizon!r}")
        Xf = self._check_future_exog(horizon, X, self.forecast_index(horizon))
        return self.transform_.inverse_forecast(self.model_.predict(horizon, Xf))

    def __repr__(self) -> str:
        return f"ForecastPipeline({self.model!r}, transform={self.transform!r})"


def hold_last_exog(X: pd.DataFrame | None, freq: str, horizon: int) -> pd.DataFrame | None:
    """A future-exog scenario: each column held at its last observed value for ``horizon``
    periods (per series for panels). Real forecasts should pass known future values."""
    from forecastflow.models.base import future_index

    if X is None:
        return None
    if isinstance(X.index, pd.MultiIndex):
        parts = {sid: hold_last_exog(g.droplevel(SERIES), freq, horizon)
                 for sid, g in X.groupby(level=SERIES, sort=False)}
        return pd.concat(parts, names=[SERIES, DATE])
    index = future_index(X.index[-1], freq, horizon)
    return pd.DataFrame(np.repeat(X.to_numpy()[-1:], horizon, axis=0), index=index,
                        columns=X.columns)
