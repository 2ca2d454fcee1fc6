"""The forecast store on every back-end: local Parquet, S3 (moto's server on loopback) and
SQL tables (SQLite, the machine's PostgreSQL and MariaDB). Re-runs replace their own rows,
a write that fails midway leaves the previous rows intact, and realized accuracy per series
answers "RMSE per shop per year" in one query."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.series import DATE, SERIES
from forecastflow.data.sources import SourceError, SourceUnavailableError
from forecastflow.lifecycle.forecast_store import (
    ACCURACY,
    FORECASTS,
    REALIZED,
    ParquetForecastStore,
    open_store,
    run_key,
)
from tests.conftest import free_port


def forecasts(key: str, value: float = 1.0, shops: tuple[str, ...] = ("01", "1"),
              ) -> pd.DataFrame:
    dates = pd.date_range("2023-01-01", periods=3, freq="MS")
    frames = [pd.DataFrame({
        SERIES: shop, "target": "sales", DATE: dates, "step": [1, 2, 3],
        "forecast": value, "lower": value - 1, "upper": value + 1, "model_version": "1",
        "family": "naive", "origin": pd.Timestamp("2022-12-01"), "origin_from": "latest_data",
        "cutoff": pd.Timestamp("2023-01-01"), "created_at": pd.Timestamp("2023-01-01 06:00"),
        "run_key": key, "exog_scenario": "none"}) for shop in shops]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(params=["parquet", "s3", "sqlite", "postgresql", "mariadb"])
def store(request: pytest.FixtureRequest, tmp_path) -> Any:
    kind = request.param
    if kind == "parquet":
        return ParquetForecastStore(tmp_path)
    if kind == "s3":
        s3 = request.getfixturevalue("s3")
        return open_store(f"s3://{s3.bucket}/forecasts")
    if kind == "sqlite":
        return open_store(f"sqlite:///{tmp_path}/store.db")
    url = request.getfixturevalue("postgres_url" if kind == "postgresql" else "mariadb_url")
    found = open_store(url)
    for table in found.tables.values():  # module-scoped database: a clean table per test
        table.drop(found._engine(), checkfirst=True)
    found._created = False
    return found


def test_partitions_are_replaced_not_appended(store: Any):
    store.write("p", "k1", FORECASTS, forecasts("k1"))
    store.write("p", "k1", FORECASTS, forecasts("k1", 2.0))  # a re-run of the same interval
    got = store.read("p", FORECASTS)
    assert len(got) == 6 and set(got["forecast"]) == {2.0}
    assert sorted(got[SERIES].unique()) == ["01", "1"]  # ids stay text
    store.write("p", "k2", FORECASTS, forecasts("k2"))
    assert store.runs("p") == ["k1", "k2"] and len(store.read("p", FORECASTS)) == 12
    assert len(store.read("p", FORECASTS, "k2")) == 6
    assert store.read("p", ACCURACY).empty and store.read("other", FORECASTS).empty
    assert store.runs("other") == []
    with pytest.raises(ValueError, match="unknown kind"):
        store.write("p", "k1", "bogus", forecasts("k1"))


def test_a_failed_write_leaves_the_previous_rows(store: Any):
    store.write("p", "k1", FORECASTS, forecasts("k1"))
    broken = forecasts("k1", 5.0).astype({"step": object})
    broken.loc[4, "step"] = 2**80  # too large for any integer column: fails on the fifth row
    with pytest.raises((SourceError, ValueError, OverflowError)):
        store.write("p", "k1", FORECASTS, broken)
    got = store.read("p", FORECASTS)
    assert len(got) == 6 and set(got["forecast"]) == {1.0}


def test_realized_points_answer_rmse_per_shop_per_year(store: Any):
    rows = forecasts("k1").assign(actual=lambda f: np.where(f[SERIES] == "01", 3.0, 1.5))
    rows = rows.assign(error=rows["actual"] - rows["forecast"], scaled=0.5, inside=True,
                       as_of=pd.Timestamp("2023-06-01"))
    store.write("p", "k1", REALIZED, rows.drop(columns=["family", "origin_from", "cutoff",
                                                       "created_at", "exog_scenario",
                                                       "run_key"]))
    got = store.read("p", REALIZED)
    got["year"] = pd.to_datetime(got[DATE]).dt.year
    rmse = got.groupby([SERIES, "year"])["error"].apply(lambda e: float(np.sqrt((e**2).mean())))
    assert rmse.to_dict() == {("01", 2023): 2.0, ("1", 2023): 0.5}


def test_rmse_per_shop_per_year_is_one_sql_query(postgres_url: str):
    from sqlalchemy import create_engine, text

    from forecastflow.data import sql

    store = open_store(postgres_url)
    rows = forecasts("k1").assign(actual=lambda f: np.where(f[SERIES] == "01", 3.0, 1.5))
    rows = rows.assign(error=rows["actual"] - rows["forecast"], as_of=pd.Timestamp("2023-06-01"))
    store.write("shops", "k1", REALIZED, rows[[SERIES, "target", DATE, "step", "forecast",
                                               "actual", "error", "as_of", "model_version"]])
    engine = create_engine(sql.database_url(postgres_url))
    query = ("SELECT series_id, EXTRACT(YEAR FROM date)::int AS year, "
             "SQRT(AVG(error * error)) AS rmse FROM forecastflow_realized "
             "WHERE problem = 'shops' GROUP BY 1, 2 ORDER BY 1")
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(text(query))] == [("01", 2023, 2.0),
                                                                  ("1", 2023, 0.5)]
    engine.dispose()


def test_store_selection(tmp_path, monkeypatch, s3: Any):
    assert run_key("2026-01-01T00:00:00") == "2026-01-01T00-00-00"
    with pytest.raises(ValueError, match="partition"):
        run_key("a/b")
    monkeypatch.setenv("FORECASTFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("FORECASTFLOW_FORECAST_STORE", raising=False)
    assert open_store().root == tmp_path / "forecasts"
    assert open_store(f"file://{tmp_path}/x").root == tmp_path / "x"
    monkeypatch.setenv("FORECASTFLOW_FORECAST_STORE", f"s3://{s3.bucket}/f")
    assert repr(open_store()) == f"S3ForecastStore('s3://{s3.bucket}/f')"
    assert "SqlForecastStore" in repr(open_store("sqlite:///x.db"))
    with pytest.raises(ValueError, match="unsupported scheme 'https'"):
        open_store("https://example.com/f")


def test_unreachable_stores_name_their_url(tmp_path, monkeypatch, s3: Any):
    port = free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(SourceUnavailableError, match=f"s3://{s3.bucket}/f/problem=p"):
        open_store(f"s3://{s3.bucket}/f").write("p", "k1", FORECASTS, forecasts("k1"))
    with pytest.raises(SourceUnavailableError, match=f"127.0.0.1:{port}"):
        open_store(f"postgresql://postgres@127.0.0.1:{port}/x").read("p", FORECASTS)
