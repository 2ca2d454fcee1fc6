"""Real sources and sinks end to end with real Airflow runs (`airflow dags test`): train from
PostgreSQL and from S3 (moto's server on loopback), batch forecasts into the SQL store and
into S3, monitoring reading new actuals from PostgreSQL; re-runs never duplicate rows, and the
model version records exactly what it was trained on."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import create_engine, text

from forecastflow.data import sql
from tests.dags.conftest import BIN, base_env, dags_test
from tests.support.services import AWS_ENV

pytestmark = pytest.mark.slow

SHOPS = ("01", "1", "7")  # ids that look numeric: read as text everywhere


def panel(start: str, periods: int) -> pd.DataFrame:
    dates = pd.date_range(start, periods=periods, freq="MS")
    t = np.arange(len(dates))
    frames = [pd.DataFrame({"year": dates.year, "date": dates.date, "shop_id": shop,
                            "sales": 100.0 * (k + 1) + 10 * np.sin(2 * np.pi * t / 12) + t,
                            "attr1": "x"}) for k, shop in enumerate(SHOPS)]
    return pd.concat(frames, ignore_index=True)


def problem(name: str, source: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, **source, "time_column": "date", "id_column": "shop_id",
            "target": "sales", "frequency": "MS", "horizon": 3,
            "models": [{"family": "naive"}, {"family": "seasonal_naive"}],
            "backtest": {"windows": 2, "step": 3}, "schedule": "@monthly",
            "monitoring": {"max_mase": 100.0, "min_points": 1}}


@pytest.fixture(scope="module")
def setup(migrated, tmp_path_factory, postgres_url: str, s3_endpoint: str):
    import boto3

    root = tmp_path_factory.mktemp("sources")
    engine = create_engine(sql.database_url(postgres_url))
    panel("2019-01-01", 72).to_sql("shops", engine, index=False, if_exists="replace")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
        "region_name": "us-east-1"})
    bucket = "ff-dags-sources"
    s3.create_bucket(Bucket=bucket)
    history = panel("2019-01-01", 72)
    for month, rows in history.groupby(pd.to_datetime(history["date"]).dt.strftime("%Y-%m")):
        s3.put_object(Bucket=bucket, Key=f"crm/sales/{month}.csv",
                      Body=rows.to_csv(index=False).encode())
    problems = root / "problems"
    problems.mkdir()
    query = "SELECT date, shop_id, sales FROM shops WHERE date <= :cutoff"
    declared = {  # the source by Airflow connection id, the store by URL
        "shops_pg": problem("shops_pg", {"source": "sql://ff_shops", "query": query,
                                         "forecast_store": postgres_url}),
        "shops_s3": problem("shops_s3", {"source": f"s3://{bucket}/crm/sales/",
                                         "forecast_store": f"s3://{bucket}/forecasts"}),
    }
    for name, body in declared.items():
        (problems / f"{name}.yaml").write_text(yaml.safe_dump(body))
    env = {**base_env(migrated, problems=problems, state=root / "state"), **AWS_ENV,
           "AWS_ENDPOINT_URL": s3_endpoint}
    # A connection in Airflow's metadata database (not the environment): tasks resolve it.
    subprocess.run([str(BIN / "airflow"), "connections", "delete", "ff_shops"], env=env,
                   capture_output=True, check=False)
    subprocess.run([str(BIN / "airflow"), "connections", "add", "ff_shops", "--conn-uri",
                    postgres_url], env=env, capture_output=True, check=True, timeout=120)
    yield {"env": env, "engine": engine, "s3": s3, "bucket": bucket}
    engine.dispose()


def run(env: dict, dag_id: str, date: str) -> None:
    result = dags_test(env, dag_id, date)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def count(engine: Any, table: str, problem: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT COUNT(*) FROM {table} WHERE problem = :p"),
                            {"p": problem}).scalar_one()


def version_tags(env: dict, name: str) -> dict[str, str]:
    code = f"""
import json
from forecastflow.lifecycle import registry
v = registry.alias_version("{name}", registry.CHAMPION)
print(json.dumps(dict(v.tags)))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_postgres_source_sql_store_and_monitoring(setup):
    env, engine = setup["env"], setup["engine"]
    run(env, "train_shops_pg", "2025-01-01")
    tags = version_tags(env, "shops_pg")
    assert tags["source.kind"] == "sql" and tags["source.rows"] == str(72 * len(SHOPS))
    assert tags["source.url"].startswith("postgresql+psycopg2://postgres@127.0.0.1:5432/")
    assert len(tags["source.query_sha256"]) == 16
    assert "2024-12-31 23:59:59.999999" in tags["source.query_params"]  # the cutoff, bound

    run(env, "forecast_shops_pg", "2025-01-01")
    run(env, "forecast_shops_pg", "2025-01-01")  # a re-run replaces its own rows
    assert count(engine, "forecastflow_forecasts", "shops_pg") == 3 * len(SHOPS)
    with engine.connect() as conn:
        shops = [r[0] for r in conn.execute(text(
            "SELECT DISTINCT series_id FROM forecastflow_forecasts ORDER BY 1"))]
    assert shops == sorted(SHOPS)

    # Three months of actuals arrive in the warehouse; the monitor reads them from there.
    new = panel("2019-01-01", 75)
    new = new[pd.to_datetime(new["date"]) >= "2025-01-01"]
    new.to_sql("shops", engine, index=False, if_exists="append")
    run(env, "monitor_shops_pg", "2025-04-01")
    run(env, "monitor_shops_pg", "2025-04-01")
    assert count(engine, "forecastflow_realized", "shops_pg") == 3 * len(SHOPS)
    assert count(engine, "forecastflow_accuracy", "shops_pg") >= 2  # overall + per step
    with engine.connect() as conn:
        rmse = dict(conn.execute(text(
            "SELECT series_id, SQRT(AVG(error * error)) FROM forecastflow_realized "
            "WHERE problem = 'shops_pg' GROUP BY series_id")).all())
    assert sorted(rmse) == sorted(SHOPS) and all(np.isfinite(v) for v in rmse.values())


def test_s3_source_and_s3_store(setup):
    env, s3, bucket = setup["env"], setup["s3"], setup["bucket"]
    run(env, "train_shops_s3", "2025-01-01")
    tags = version_tags(env, "shops_s3")
    assert tags["source.kind"] == "s3" and tags["source.n_objects"] == "72"
    first = s3.head_object(Bucket=bucket, Key="crm/sales/2019-01.csv")["ETag"].strip('"')
    assert tags["source.objects"].startswith(f"crm/sales/2019-01.csv@{first}")
    run(env, "forecast_shops_s3", "2025-01-01")
    run(env, "forecast_shops_s3", "2025-01-01")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="forecasts/")["Contents"]
    assert [o["Key"] for o in listed] == [
        "forecasts/problem=shops_s3/run=2025-01-01T00-00-00/forecasts.parquet"]
