"""The forecast store: batch forecasts and their realized accuracy, per problem and run.

The embedded default is Parquet files partitioned by problem and run under the state folder::

    <state>/forecasts/problem=<name>/run=<key>/forecasts.parquet   (forecast_<p> runs)
    <state>/forecasts/problem=<name>/run=<key>/realized.parquet    (those forecasts' actuals)
    <state>/forecasts/problem=<name>/run=<key>/accuracy.parquet    (monitor_<p> runs)

``key`` is the data interval of the Airflow run that wrote it, so re-running a run overwrites
its own partition and never duplicates rows. The same layout lives in S3
(:mod:`~forecastflow.lifecycle.s3_store`) and as tables in a SQL database
(:mod:`~forecastflow.lifecycle.sql_store`); :func:`open_store` picks one from a URL.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol

import pandas as pd

from forecastflow import storage

FORECASTS, ACCURACY, REALIZED = "forecasts", "accuracy", "realized"
KINDS = (FORECASTS, ACCURACY, REALIZED)
_KEY = re.compile(r"^[A-Za-z0-9_.:+-]+$")


class ForecastStore(Protocol):
    """Where batch forecasts and realized accuracy live."""

    def write(self, problem: str, run_key: str, kind: str, frame: pd.DataFrame) -> str:
        """Replace the ``kind`` partition of (problem, run); returns its location."""
        ...

    def read(self, problem: str, kind: str, run_key: str | None = None) -> pd.DataFrame:
        """All runs' rows of ``kind`` for a problem (or one run's), empty if none."""
        ...

    def runs(self, problem: str) -> list[str]:
        """Run keys with stored forecasts, oldest first."""
        ...


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {list(KINDS)}")
    return kind


def run_key(cutoff: str) -> str:
    """A partition-safe key from a run's data-interval end (ISO timestamp)."""
    key = str(cutoff).replace(":", "-").replace(" ", "T")
    if not _KEY.match(key):
        raise ValueError(f"run key {key!r} has characters a partition name cannot hold")
    return key


class ParquetForecastStore:
    """Parquet partitions ``problem=<name>/run=<key>/<kind>.parquet`` under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ParquetForecastStore({str(self.root)!r})"

    def _path(self, problem: str, run_key: str, kind: str) -> Path:
        return self.root / f"problem={problem}" / f"run={run_key}" / f"{check_kind(kind)}.parquet"

    def write(self, problem: str, run_key: str, kind: str, frame: pd.DataFrame) -> str:
        path = self._path(problem, run_key, kind)
        storage.write_frame(frame.reset_index(drop=True), path)
        return str(path)

    def _keys(self, problem: str) -> list[str]:
        return sorted(p.name.removeprefix("run=")
                      for p in (self.root / f"problem={problem}").glob("run=*"))

    def runs(self, problem: str) -> list[str]:
        return [key for key in self._keys(problem)
                if self._path(problem, key, FORECASTS).exists()]

    def read(self, problem: str, kind: str, run_key: str | None = None) -> pd.DataFrame:
        keys = [run_key] if run_key else self._keys(problem)
        frames = [storage.read_frame(path) for key in keys
                  if (path := self._path(problem, key, kind)).exists()]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)


def open_store(url: str | None = None) -> ForecastStore:
    """The store at ``url`` (a problem's ``forecast_store``), else ``FORECASTFLOW_FORECAST_STORE``,
    else ``<state>/forecasts``: a local folder or ``file://`` URL, ``s3://bucket/prefix``
    (boto3's credential chain and ``AWS_ENDPOINT_URL``), or a database (``sql://<connection
    id>``, ``postgresql://...``, ``mysql+pymysql://...``, ``sqlite:///...``)."""
    from forecastflow.data.sources import is_sql, scheme_of

    url = url or os.environ.get("FORECASTFLOW_FORECAST_STORE")
    if not url:
        return ParquetForecastStore(storage.state_dir() / "forecasts")
    if url.startswith("file://"):
        return ParquetForecastStore(url.removeprefix("file://"))
    if url.startswith("s3://"):
        from forecastflow.lifecycle.s3_store import S3ForecastStore

        return S3ForecastStore(url)
    if "://" in url and is_sql(url):
        from forecastflow.lifecycle.sql_store import SqlForecastStore

        return SqlForecastStore(url)
    if "://" in url:
        raise ValueError(f"forecast store {url!r}: unsupported scheme {scheme_of(url)!r}; use "
                         "a folder, file://, s3:// or a database URL (sql://<connection id>)")
    return ParquetForecastStore(url)
