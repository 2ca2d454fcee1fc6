"""SQL sources on the machine's PostgreSQL and MariaDB (a database of their own per module):
tables and queries with bound parameters, the cutoff filtered by the database, chunked reads,
connection ids, lineage without the password, and every bad input as a clear error."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from forecastflow.data import sql
from forecastflow.data.problem import parse_problem
from forecastflow.data.sources import (
    SourceError,
    SourceOptions,
    SourceUnavailableError,
    read,
    read_problem,
)
from forecastflow.data.validation import DataValidationError, load_data
from tests.conftest import free_port

SHOPS = pd.DataFrame({
    "year": [2023] * 6,
    "date": pd.to_datetime(["2023-01-01", "2023-02-01", "2023-03-01"] * 2).date,
    "shop_id": ["01"] * 3 + ["1"] * 3,
    "sales": [10.5, 11.0, 12.25, 100.0, 110.0, 120.0],
    "attr1": ["x"] * 6,
})


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def db(request: pytest.FixtureRequest) -> str:
    """A database with table ``shops`` (ids 01 and 1 stored as text) on each server."""
    url = request.getfixturevalue("postgres_url" if request.param == "postgresql"
                                  else "mariadb_url")
    engine = create_engine(sql.database_url(url))
    SHOPS.to_sql("shops", engine, index=False, if_exists="replace")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bad_types (date DATE, shop_id VARCHAR(8), "
                          "sales VARCHAR(16))"))
        conn.execute(text("INSERT INTO bad_types VALUES ('2023-01-01', 'a', '1.5'), "
                          "('2023-02-01', 'a', 'n/a')"))
    engine.dispose()
    return url


def shop_problem(db: str, **source: Any) -> Any:
    return parse_problem({
        "name": "shops", "source": db, **(source or {"table": "shops"}), "time_column": "date",
        "target": "sales", "id_column": "shop_id", "frequency": "MS", "horizon": 1,
        "models": [{"family": "naive"}], "backtest": {"windows": 1, "min_train": 2}})


def test_table_reads_needed_columns_with_ids_as_text(db: str):
    got = read_problem(shop_problem(db))
    assert list(got.frame.columns) == ["date", "shop_id", "sales"]
    assert sorted(got.frame["shop_id"].unique()) == ["01", "1"]
    assert got.lineage["kind"] == "sql" and got.lineage["rows"] == 6
    assert got.lineage["table"] == "shops" and len(got.lineage["query_sha256"]) == 16
    data = load_data(shop_problem(db))
    assert data.series_ids == ["01", "1"]


def test_the_database_filters_rows_after_the_cutoff(db: str):
    got = read_problem(shop_problem(db), cutoff=pd.Timestamp("2023-02-01"))
    assert len(got.frame) == 4 and got.lineage["filtered_at"] == "2023-02-01 00:00:00"


def test_query_with_bound_cutoff_and_params(db: str):
    query = ("SELECT date, shop_id, sales FROM shops WHERE shop_id = :shop "
             "AND date <= :cutoff ORDER BY date")
    problem = shop_problem(db, query=query, query_params={"shop": "1"})
    got = read_problem(problem, cutoff=pd.Timestamp("2023-02-15"))
    assert got.frame["sales"].tolist() == [100.0, 110.0]
    assert got.lineage["query_params"]["shop"] == "1"
    everything = read_problem(problem)  # no cutoff: a date later than any row
    assert len(everything.frame) == 3


def test_a_value_is_never_formatted_into_the_query(db: str):
    problem = shop_problem(db, query="SELECT date, shop_id, sales FROM shops "
                                     "WHERE shop_id = :shop", query_params={"shop": "1' OR '1'='1"})
    assert read_problem(problem).frame.empty


def test_chunked_read_logs_progress(db: str, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="forecastflow.data.sql")
    got = read(db, SourceOptions(table="shops", chunksize=2))
    assert len(got.frame) == 6
    progress = [r.getMessage() for r in caplog.records if "rows read" in r.getMessage()]
    assert progress[-1].endswith("table shops: 6 rows read")


def test_connection_id_from_the_environment(db: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", db)
    got = read("sql://warehouse", SourceOptions(table="shops"))
    assert len(got.frame) == 6 and got.lineage["url"].endswith(db.rsplit("/", 1)[1])


@pytest.mark.parametrize(("source", "message"), [
    ({"table": "no_such_table"}, "does not exist"),
    ({"query": "SELECT nothing FROM shops"}, "nothing"),
    ({"query": "SELEC date FROM shops"}, "syntax"),
    ({"query": "SELECT * FROM shops WHERE shop_id = :shop"}, r"bound parameter\(s\) \['shop'\]"),
])
def test_table_missing_and_query_errors(db: str, source: dict, message: str):
    with pytest.raises(SourceError, match=message) as info:
        read_problem(shop_problem(db, **source))
    assert db.rsplit("/", 1)[1] in str(info.value)


def test_a_column_of_the_wrong_type_is_named(db: str):
    problem = shop_problem(db, table="bad_types")
    with pytest.raises(DataValidationError, match="sales") as info:
        load_data(problem)
    assert "n/a" in str(info.value)


def test_wrong_credentials_are_bad_input(db: str):
    url = sql.database_url(db).set(username="nobody_ff", password="wrong")
    with pytest.raises(SourceError) as info:
        read(url.render_as_string(hide_password=False), SourceOptions(table="shops"))
    assert "nobody_ff" in str(info.value) and "wrong" not in str(info.value)


def test_database_down_is_unavailable(db: str):
    url = sql.database_url(db).set(port=free_port())
    with pytest.raises(SourceUnavailableError, match="database unreachable") as info:
        read(url.render_as_string(hide_password=False), SourceOptions(table="shops"))
    assert str(url.port) in str(info.value)


@pytest.mark.parametrize(("uri", "message"), [
    ("sql://missing_conn_ff", "AIRFLOW_CONN_MISSING_CONN_FF"),
    ("sql://a/b", "expected sql://<connection id>"),
    ("oracle+nosuchdriver://x/y", "unsupported source scheme"),
])
def test_bad_urls(uri: str, message: str):
    with pytest.raises(SourceError, match=message):
        read(uri, SourceOptions(table="shops"))


def test_problem_declares_exactly_one_of_table_and_query():
    from forecastflow.data.problem import ProblemConfigError

    with pytest.raises(ProblemConfigError, match="exactly one of table or query"):
        shop_problem("postgresql://h/db", table="a", query="SELECT 1")
    with pytest.raises(ProblemConfigError, match="apply to SQL sources"):
        shop_problem("data.csv", table="a")
    with pytest.raises(ProblemConfigError, match="table"):
        shop_problem("postgresql://h/db", table="a; DROP TABLE x")


def test_sqlite_file(tmp_path):
    path = tmp_path / "shops.db"
    engine = create_engine(f"sqlite:///{path}")
    SHOPS.to_sql("shops", engine, index=False)
    engine.dispose()
    got = read_problem(shop_problem(f"sqlite:///{path}"), cutoff=pd.Timestamp("2023-01-31"))
    assert sorted(got.frame["shop_id"]) == ["01", "1"]


def test_passwords_never_reach_errors_or_dag_docs(mariadb_url: str, monkeypatch, tmp_path):
    """MariaDB's root has no password here, so a URL with one is refused: the error, the
    masked URL and the DAG docs' source show ``***``."""
    import yaml

    from forecastflow.connections import masked
    from forecastflow.orchestration.spec import discover

    secret = sql.database_url(mariadb_url).set(password="s3cret-pw").render_as_string(
        hide_password=False)
    with pytest.raises(SourceError) as info:
        read(secret, SourceOptions(table="shops"))
    assert "s3cret-pw" not in str(info.value) and "Access denied" in str(info.value)
    assert masked(secret) == secret.replace("s3cret-pw", "***")
    declared = shop_problem(secret).model_dump(mode="json", exclude_defaults=True)
    (tmp_path / "pw.yaml").write_text(yaml.safe_dump({**declared, "name": "pw"}))
    monkeypatch.setenv("FORECASTFLOW_PROBLEMS_DIR", str(tmp_path))
    [spec] = [s for s in discover() if s.name == "pw"]
    assert "s3cret-pw" not in spec.source and "***" in spec.source
