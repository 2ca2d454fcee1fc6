"""One panel model made of parts, each fitted on a contiguous slice of the series.

The training DAG fits a large panel as mapped tasks, one slice of the series each, so that
several workers share the fit and no task holds the whole panel. :class:`SeriesParts` puts
the fitted parts back together as one forecaster: each series goes to the part that fitted
it, and the forecasts come back in the fitted series order. ``fit`` does the same in one
process (the parts one after another), which is what tests and notebooks use.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd

from forecastflow.data.series import SERIES
from forecastflow.models.base import Forecast, Forecaster, ModelError
from forecastflow.models.compact import SeriesEnds
from forecastflow.models.local import _merge_info


def slices(n_series: int, n_parts: int) -> list[list[int]]:
    """``n_parts`` (at most one per series) contiguous ``[start, stop)`` slices of nearly
    equal size covering ``n_series`` series."""
    if n_series < 1 or n_parts < 1:
        raise ValueError(f"slices: need at least one series and one part, got {n_series} "
                         f"series and {n_parts} parts")
    bounds = np.linspace(0, n_series, min(n_parts, n_series) + 1).round().astype(int)
    return [[int(a), int(b)] for a, b in pairwise(bounds)]


class SeriesParts(Forecaster):
    """Clones of ``model``, each fitted on one of ``n_parts`` slices of a panel's series."""

    family = "series_parts"

    def __init__(self, model: Forecaster, n_parts: int = 2) -> None:
        self.model = model
        self.n_parts = n_parts

    @property
    def capabilities(self) -> dict[str, bool]:  # type: ignore[override]
        return {**self.model.capabilities, "panel": True}

    @property
    def coverage(self) -> float:
        return self.model.coverage

    @property
    def fit_info_(self) -> dict[str, object]:
        infos = [getattr(p, "fit_info_", {}) for p in self.parts_]
        fallbacks = {k: v for i in infos for k, v in (i.get("fallbacks") or {}).items()}
        merged = _merge_info(self.parts_, None)
        merged["n_not_converged"] = int(sum(i.get("n_not_converged", 0) for i in infos))
        if fallbacks:
            merged["fallbacks"] = fallbacks
        return merged

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        if not isinstance(y.index, pd.MultiIndex):
            raise ModelError("series_parts splits a panel; y has one series")
        if not isinstance(self.n_parts, (int, np.integer)) or self.n_parts < 1:
            raise ModelError(f"series_parts: n_parts must be a positive integer, got "
                             f"{self.n_parts!r}")
        ids = list(self.last_)
        codes = pd.Index(ids).get_indexer(y.index.get_level_values(SERIES).astype(str))
        parts = []
        for start, stop in slices(len(ids), int(self.n_parts)):
            rows = (codes >= start) & (codes < stop)
            parts.append(self.model.clone().fit(y[rows], None if X is None else X[rows]))
        self._set_parts(parts)

    @classmethod
    def assemble(cls, model: Forecaster, parts: list[Forecaster]) -> Forecaster:
        """The fitted container of ``parts`` (clones of ``model`` fitted elsewhere, on
        disjoint series, in series order); one part is returned as it is."""
        if not parts:
            raise ModelError("series_parts: no fitted parts to assemble")
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        for i, part in enumerate(parts):
            if not isinstance(getattr(part, "last_", None), dict):
                raise ModelError(f"series_parts: part {i} was not fitted on a panel")
            if (part.targets_, part.exog_, part.freq_) != (first.targets_, first.exog_,
                                                           first.freq_):
                raise ModelError(
                    f"series_parts: part {i} has targets {part.targets_}, exog {part.exog_}, "
                    f"frequency {part.freq_}; part 0 has {first.targets_}, {first.exog_}, "
                    f"{first.freq_}")
        new = cls(model, len(parts))
        new.freq_, new.targets_, new.exog_ = first.freq_, first.targets_, first.exog_
        new.last_ = SeriesEnds((sid, end) for part in parts for sid, end in part.last_.items())
        if len(new.last_) != sum(len(p.last_) for p in parts):
            raise ModelError("series_parts: the parts share series; each series must be in "
                             "exactly one part")
        new.n_obs_ = int(sum(p.n_obs_ for p in parts))
        new._set_parts(parts)
        return new

    def _set_parts(self, parts: list[Forecaster]) -> None:
        self.parts_ = parts
        self.index_ = pd.Index([sid for p in parts for sid in p.last_])
        self.part_of_ = np.repeat(np.arange(len(parts)), [len(p.last_) for p in parts])

    def _rows_by_part(self, index: pd.MultiIndex) -> np.ndarray:
        """The part of each row of a ``(series, date)`` index."""
        where = self.index_.get_indexer(index.get_level_values(SERIES).astype(str))
        if (where < 0).any():
            unknown = index.get_level_values(SERIES)[where < 0].unique()[:5].tolist()
            raise ModelError(f"series_parts: series {unknown} were not fitted")
        return self.part_of_[where]

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        part = self._rows_by_part(y.index)
        self.parts_ = [p.update(y[part == i], None if X is None else X[part == i])
                       for i, p in enumerate(self.parts_)]

    def predict(self, horizon: int, X: pd.DataFrame | None = None) -> Forecast:
        if not hasattr(self, "parts_"):
            raise ModelError("series_parts: call fit before predict")
        forecasts = [p.predict(horizon, X) for p in self.parts_]
        return Forecast(*(pd.concat([getattr(f, k) for f in forecasts])
                          for k in ("mean", "lower", "upper")), coverage=self.coverage)
