"""The forecast store in a SQL database: one table per kind, keyed by problem and run.

Tables ``forecastflow_forecasts``, ``forecastflow_accuracy`` and ``forecastflow_realized``
(created on first write) hold every problem's rows with ``problem`` and ``run_key`` columns.
Writing a run's rows deletes its previous rows and inserts the new ones in one transaction: a
re-run replaces its own rows, and a write that fails midway leaves the previous rows intact.
RMSE per shop per year is one query::

    SELECT series_id, EXTRACT(YEAR FROM date) AS year, SQRT(AVG(error * error)) AS rmse
    FROM forecastflow_realized WHERE problem = 'shop_sales' AND step = 1 GROUP BY 1, 2
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from forecastflow.data import sql

log = logging.getLogger(__name__)

TEXT, TIME, INT, FLOAT, BOOL = "text", "time", "int", "float", "bool"
KEY_COLUMNS = {"problem": TEXT, "run_key": TEXT}
SCHEMAS: dict[str, dict[str, str]] = {
    "forecasts": {"series_id": TEXT, "target": TEXT, "date": TIME, "step": INT,
                  "forecast": FLOAT, "lower": FLOAT, "upper": FLOAT, "model_version": TEXT,
                  "family": TEXT, "origin": TIME, "origin_from": TEXT, "cutoff": TIME,
                  "created_at": TIME, "exog_scenario": TEXT},
    "accuracy": {"model_version": TEXT, "step": INT, "n": INT, "rmse": FLOAT, "mase": FLOAT,
                 "coverage": FLOAT, "last_date": TIME, "cutoff": TIME},
    "realized": {"model_version": TEXT, "origin": TIME, "series_id": TEXT, "target": TEXT,
                 "date": TIME, "step": INT, "forecast": FLOAT, "lower": FLOAT,
                 "upper": FLOAT, "actual": FLOAT, "error": FLOAT, "scaled": FLOAT,
                 "inside": BOOL, "as_of": TIME},
}
PREFIX = "forecastflow_"


def _table(metadata: Any, kind: str) -> Any:
    from sqlalchemy import Boolean, Column, DateTime, Float, Index, Integer, String, Table, Text

    types = {TEXT: Text, TIME: DateTime, INT: Integer, FLOAT: Float, BOOL: Boolean}
    keys = [Column(name, String(200), nullable=False) for name in KEY_COLUMNS]
    columns = [Column(name, types[kind_](), nullable=True)
               for name, kind_ in SCHEMAS[kind].items()]
    name = PREFIX + kind
    return Table(name, metadata, *keys, *columns, Index(f"ix_{name}_key", "problem", "run_key"))


class SqlForecastStore:
    """Forecasts, accuracy and realized points in tables of the database at ``uri``
    (``sql://<connection id>`` or a SQLAlchemy URL)."""

    def __init__(self, uri: str) -> None:
        from sqlalchemy import MetaData

        self.uri = uri
        self.url = sql.database_url(uri)
        self.where = sql.display(self.url)
        self.metadata = MetaData()
        self.tables = {kind: _table(self.metadata, kind) for kind in SCHEMAS}
        self._created = False

    def __repr__(self) -> str:
        return f"SqlForecastStore({self.where!r})"

    def _engine(self) -> Any:
        engine = sql.engine(self.url)
        if not self._created:
            with sql.translated(f"forecast store {self.where}"):
                self.metadata.create_all(engine, checkfirst=True)
            self._created = True
        return engine

    def _rows(self, kind: str, problem: str, run_key: str, frame: pd.DataFrame,
              ) -> list[dict[str, Any]]:
        schema = SCHEMAS[kind]
        extra = sorted(set(frame.columns) - set(schema) - set(KEY_COLUMNS))
        if extra:
            raise ValueError(f"{kind} rows have columns {extra} that table "
                             f"{PREFIX + kind} does not hold")
        out = frame.reindex(columns=list(schema)).astype(object)
        for name, type_ in schema.items():
            if type_ == TIME:
                out[name] = pd.to_datetime(frame[name]).dt.tz_localize(None).astype(object) \
                    if name in frame else None
        out = out.where(pd.notna(out), None)
        if "series_id" in schema:
            out["series_id"] = out["series_id"].fillna("")
        records = out.to_dict("records")
        for record in records:
            record.update(problem=problem, run_key=run_key)
        return records

    def write(self, problem: str, run_key: str, kind: str, frame: pd.DataFrame) -> str:
        """Replace (problem, run_key)'s rows of ``kind`` in one transaction."""
        from sqlalchemy import delete

        table = self.tables[_checked(kind)]
        records = self._rows(kind, problem, run_key, frame)
        where = f"forecast store {self.where} table {table.name}"
        with sql.translated(where), self._engine().begin() as conn:
            conn.execute(delete(table).where(table.c.problem == problem,
                                             table.c.run_key == run_key))
            if records:
                conn.execute(table.insert(), records)
        log.info("%s: %d row(s) for problem %s run %s", where, len(records), problem, run_key)
        return f"{self.where}#{table.name}?problem={problem}&run_key={run_key}"

    def read(self, problem: str, kind: str, run_key: str | None = None) -> pd.DataFrame:
        from sqlalchemy import select

        table = self.tables[_checked(kind)]
        stmt = select(table).where(table.c.problem == problem)
        if run_key:
            stmt = stmt.where(table.c.run_key == run_key)
        with sql.translated(f"forecast store {self.where}"), self._engine().connect() as conn:
            frame = pd.read_sql(stmt, conn)
        return frame.drop(columns="problem") if not frame.empty else pd.DataFrame()

    def runs(self, problem: str) -> list[str]:
        from sqlalchemy import select

        table = self.tables["forecasts"]
        stmt = select(table.c.run_key).where(table.c.problem == problem).distinct()
        with sql.translated(f"forecast store {self.where}"), self._engine().connect() as conn:
            return sorted(row[0] for row in conn.execute(stmt))


def _checked(kind: str) -> str:
    if kind not in SCHEMAS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(SCHEMAS)}")
    return kind

