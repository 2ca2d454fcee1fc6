"""Source read benchmark: ``--rows`` rows of a daily shop panel from PostgreSQL and from a
Parquet object in S3 (moto's server on loopback) into the validated frame, against the plain
baselines a user would write, measured in the same run:

- PostgreSQL: ``pandas.read_sql(query, engine)`` vs ForecastFlow's chunked, streamed read of
  the problem's table + validation (``forecastflow.data.validation.load_data``);
- S3: ``boto3 get_object`` + ``pandas.read_parquet`` vs ForecastFlow's ``s3://`` read +
  validation.

The modes alternate ``--rounds`` times (the machine is shared and noisy); medians and their
ratio to the baseline are printed, for ForecastFlow's read alone and with validation (the
target: within 1.2x of the baseline, validation included).

    .venv/bin/python bench/sources.py [--rows 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DB = "forecastflow_bench"


def panel(rows: int) -> pd.DataFrame:
    """``rows`` rows: 1000-day daily series, ids like store codes."""
    days = 1000
    shops = max(rows // days, 1)
    rng = np.random.default_rng(0)
    dates = pd.date_range("2021-01-01", periods=days, freq="D")
    return pd.DataFrame({
        "date": np.tile(dates.values, shops),
        "shop_id": np.repeat([f"{k:05d}" for k in range(shops)], days),
        "sales": rng.gamma(5.0, 20.0, shops * days).round(2)})


def problem(source: str, **extra: object) -> object:
    from forecastflow.data.problem import parse_problem

    return parse_problem({"name": "bench", "source": source, **extra, "time_column": "date",
                          "id_column": "shop_id", "target": "sales", "frequency": "D",
                          "horizon": 7, "models": [{"family": "naive"}]})


def setup_postgres(frame: pd.DataFrame) -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB}"'))
    admin.dispose()
    url = f"postgresql://postgres@127.0.0.1:5432/{DB}"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE sales (date DATE, shop_id VARCHAR(16), "
                          "sales DOUBLE PRECISION)"))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    raw = engine.raw_connection()
    with raw.cursor() as cursor:
        cursor.copy_expert("COPY sales FROM STDIN WITH CSV", buffer)
    raw.commit()
    raw.close()
    engine.dispose()
    return url


def drop_postgres() -> None:
    from sqlalchemy import create_engine, text

    from forecastflow.data import sql

    for engine in sql._ENGINES.values():
        engine.dispose()
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
    admin.dispose()


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def compare(name: str, rows: int, modes: dict[str, Callable[[], object]],
            rounds: int) -> dict[str, float]:
    """Median wall time per mode over alternating rounds; the first mode is the baseline."""
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode, call in modes.items():
            times[mode].append(timed(call))
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    base = next(iter(medians.values()))
    for mode, value in medians.items():
        print(f"{name:10s} {mode:34s} {value:6.2f} s  {rows / value / 1e6:6.2f} M rows/s  "
              f"{value / base:5.2f}x  [{', '.join(f'{t:.2f}' for t in times[mode])}]",
              flush=True)
    return medians


def bench_postgres(frame: pd.DataFrame, rounds: int) -> dict[str, float]:
    from sqlalchemy import create_engine

    from forecastflow.data.sources import read_problem
    from forecastflow.data.validation import load_data

    url = setup_postgres(frame)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        declared = problem(url, table="sales")
        return compare("postgresql", len(frame), {
            "baseline: pandas.read_sql": lambda: pd.read_sql(
                "SELECT date, shop_id, sales FROM sales", engine),
            "forecastflow read (chunked)": lambda: read_problem(declared),
            "forecastflow read + validation": lambda: load_data(declared)}, rounds)
    finally:
        engine.dispose()
        drop_postgres()


def bench_s3(frame: pd.DataFrame, rounds: int) -> dict[str, float]:
    import boto3
    from moto.server import ThreadedMotoServer

    from forecastflow.data.sources import read_problem
    from forecastflow.data.validation import load_data

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": f"http://{host}:{port}"})
    try:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="sales.parquet", Body=frame.to_parquet(index=False))
        declared = problem("s3://bench/sales.parquet")

        def baseline() -> pd.DataFrame:
            body = s3.get_object(Bucket="bench", Key="sales.parquet")["Body"].read()
            return pd.read_parquet(io.BytesIO(body))

        return compare("s3 parquet", len(frame), {
            "baseline: boto3 + read_parquet": baseline,
            "forecastflow read": lambda: read_problem(declared),
            "forecastflow read + validation": lambda: load_data(declared)}, rounds)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["postgresql", "s3"], default=None)
    args = parser.parse_args()
    frame = panel(args.rows)
    print(f"{len(frame):,} rows ({frame['shop_id'].nunique()} daily series); medians of "
          f"{args.rounds} alternating rounds", flush=True)
    if args.only in (None, "postgresql"):
        bench_postgres(frame, args.rounds)
    if args.only in (None, "s3"):
        bench_s3(frame, args.rounds)


if __name__ == "__main__":
    main()
