"""The validated data every stage after validation works on.

``SeriesData.y`` holds the targets (columns) indexed by timestamp, or by ``(series_id, date)``
for panels; ``SeriesData.X`` holds the exogenous columns on the same index. Frames are always
sorted, regular at ``freq`` and free of missing values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecastflow import storage

SERIES = "series_id"
DATE = "date"


@dataclass
class SeriesData:
    """Targets ``y`` and exogenous ``X`` (or None) of one problem, with their frequency."""

    y: pd.DataFrame
    X: pd.DataFrame | None
    freq: str
    season: int = 1
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def is_panel(self) -> bool:
        return isinstance(self.y.index, pd.MultiIndex)

    @property
    def targets(self) -> list[str]:
        return list(self.y.columns)

    @property
    def exog(self) -> list[str]:
        return [] if self.X is None else list(self.X.columns)

    @property
    def series_ids(self) -> list[str]:
        if not self.is_panel:
            return []
        return list(self.y.index.get_level_values(SERIES).unique())

    @property
    def end(self) -> pd.Timestamp:
        dates = self.y.index.get_level_values(DATE) if self.is_panel else self.y.index
        return dates.max()

    def series(self, series_id: str) -> SeriesData:
        """One series of a panel as single-series data."""
        y = self.y.xs(series_id, level=SERIES)
        X = None if self.X is None else self.X.xs(series_id, level=SERIES)
        return SeriesData(_with_freq(y, self.freq), _with_freq(X, self.freq), self.freq,
                          self.season)

    def iter_series(self) -> Iterator[tuple[str | None, SeriesData]]:
        if not self.is_panel:
            yield None, self
            return
        for sid in self.series_ids:
            yield sid, self.series(sid)

    def subset(self, series_ids: list[str]) -> SeriesData:
        if not self.is_panel:
            return self
        mask = self.y.index.get_level_values(SERIES).isin(series_ids)
        X = None if self.X is None else self.X[mask]
        return SeriesData(self.y[mask], X, self.freq, self.season)

    def until(self, cutoff: pd.Timestamp) -> SeriesData:
        """Observations at or before ``cutoff``."""
        dates = self.y.index.get_level_values(DATE) if self.is_panel else self.y.index
        mask = dates <= cutoff
        X = None if self.X is None else self.X[mask]
        return SeriesData(self.y[mask], X, self.freq, self.season)

    def fingerprint(self) -> str:
        """SHA-256 over the values and index: identical data gives the identical hash."""
        digest = hashlib.sha256()
        for frame in (self.y, self.X):
            if frame is not None:
                digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
                digest.update(",".join(map(str, frame.columns)).encode())
        digest.update(self.freq.encode())
        return digest.hexdigest()[:16]

    # Storage -------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Store as one Parquet file; metadata goes into the frame's attrs."""
        frame = self.y if self.X is None else self.y.join(self.X)
        frame = frame.copy()
        frame.attrs = {
            "targets": self.targets,
            "exog": self.exog,
            "freq": self.freq,
            "season": self.season,
            "dropped": self.dropped,
        }
        return storage.write_frame(frame, path)

    @classmethod
    def load(cls, path: str | Path, series_slice: list[int] | None = None) -> SeriesData:
        """The stored data; with ``series_slice`` ``[start, stop)``, only those series of a
        panel's series order (read by row group, so the whole panel is never in memory)."""
        if series_slice is None:
            frame = storage.read_frame(path)
        else:
            ids = stored_series_ids(path)[series_slice[0]:series_slice[1]]
            if not ids:
                raise ValueError(f"series slice {series_slice} of {path} holds no series "
                                 f"(the panel has {len(stored_series_ids(path))})")
            frame = storage.read_frame(path, filters=[(SERIES, "in", ids)])
        meta = frame.attrs
        y = frame[meta["targets"]]
        X = frame[meta["exog"]] if meta["exog"] else None
        if not isinstance(y.index, pd.MultiIndex):
            y, X = _with_freq(y, meta["freq"]), _with_freq(X, meta["freq"])
        return cls(y, X, meta["freq"], int(meta["season"]), dict(meta.get("dropped", {})))


def stored_series_ids(path: str | Path) -> list[str]:
    """The series of a stored panel in their stored order (only that column is read)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    if SERIES not in names:
        return []
    column = pq.read_table(path, columns=[SERIES]).column(SERIES)
    return pc.unique(column).to_pylist()


def _with_freq(frame: pd.DataFrame | None, freq: str) -> pd.DataFrame | None:
    if frame is None:
        return None
    frame = frame.copy()
    frame.index = pd.DatetimeIndex(frame.index, freq=freq, name=DATE)
    return frame


def period_ordinals(index: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """Integer period numbers of ``index`` at ``freq`` (consecutive periods differ by one), so
    ``ordinal % season`` is the position in the season, consistent across series."""
    offset = to_offset(freq)
    head, _, anchor = offset.rule_code.partition("-")
    if head.endswith("S") and len(head) > 1:  # MS -> M, QS-JAN -> Q-JAN, YS -> Y
        head = head[:-1]
    alias = f"{head}-{anchor}" if anchor else head
    if offset.n == 1:
        try:
            return pd.DatetimeIndex(index).to_period(alias).asi8
        except ValueError:
            pass  # no period type (business month starts, semi-months ...)
    # Count periods on a grid from a fixed early anchor (slower, any frequency or multiple).
    index = pd.DatetimeIndex(index)
    start = offset.rollback(pd.Timestamp("1900-01-01")) if hasattr(offset, "rollback") else (
        pd.Timestamp("1900-01-01"))
    grid = pd.date_range(start, index.max(), freq=offset)
    return grid.searchsorted(index).astype(np.int64)


def last_exog(X: pd.DataFrame) -> dict[str, Any]:
    """The last observed exogenous values (per series for panels): the held-last scenario."""
    if isinstance(X.index, pd.MultiIndex):
        return {str(sid): g.iloc[-1].to_dict() for sid, g in X.groupby(level=SERIES, sort=False)}
    return X.iloc[-1].to_dict()
