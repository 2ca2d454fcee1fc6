"""The forecast store in S3: the local layout, ``<prefix>/problem=<p>/run=<key>/<kind>.parquet``.

Each partition file is one object, replaced by one PUT: a write that fails leaves the previous
object as it was, and readers never see half a file. Tools that read Hive-style partitions
(Athena, DuckDB, Spark) read the prefix as one table with ``problem`` and ``run`` columns.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import pandas as pd

from forecastflow.data import s3 as s3_io

log = logging.getLogger(__name__)


class S3ForecastStore:
    """Parquet partitions under ``s3://bucket/prefix``."""

    def __init__(self, uri: str, endpoint_url: str | None = None,
                 aws_conn_id: str | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.bucket, prefix = s3_io.split_uri(self.uri)
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.client = s3_io.client(endpoint_url, aws_conn_id)

    def __repr__(self) -> str:
        return f"S3ForecastStore({self.uri!r})"

    def _key(self, problem: str, run_key: str, kind: str) -> str:
        from forecastflow.lifecycle.forecast_store import check_kind

        return f"{self.prefix}problem={problem}/run={run_key}/{check_kind(kind)}.parquet"

    def write(self, problem: str, run_key: str, kind: str, frame: pd.DataFrame) -> str:
        key = self._key(problem, run_key, kind)
        uri = f"s3://{self.bucket}/{key}"
        body = frame.reset_index(drop=True).to_parquet()
        with s3_io.translated(f"forecast store {uri}", self.client):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        log.info("forecast store: %d row(s) -> %s", len(frame), uri)
        return uri

    def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        with s3_io.translated(f"forecast store s3://{self.bucket}/{prefix}", self.client):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix):
                keys += [obj["Key"] for obj in page.get("Contents", [])]
        return sorted(keys)

    def _partitions(self, problem: str, kind: str) -> dict[str, str]:
        """Run key -> object key of ``kind`` for the problem."""
        base = f"{self.prefix}problem={problem}/run="
        found = {}
        for key in self._list(base):
            run, _, name = key.removeprefix(base).partition("/")
            if name == f"{kind}.parquet":
                found[run] = key
        return found

    def runs(self, problem: str) -> list[str]:
        return sorted(self._partitions(problem, "forecasts"))

    def read(self, problem: str, kind: str, run_key: str | None = None) -> pd.DataFrame:
        parts = self._partitions(problem, kind)
        keys = [parts[run_key]] if run_key in parts else [] if run_key else list(parts.values())
        frames = [self._get(key) for key in sorted(keys)]
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _get(self, key: str) -> Any:
        with s3_io.translated(f"forecast store s3://{self.bucket}/{key}", self.client):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return pd.read_parquet(io.BytesIO(body))
