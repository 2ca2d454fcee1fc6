"""SQL databases through SQLAlchemy: URLs from connection ids, engines, chunked reads, errors.

A source or store URL is ``sql://<connection id>`` (see :mod:`forecastflow.connections`) or a
SQLAlchemy URL (``postgresql://user@host/db``, ``mysql+pymysql://...``, ``sqlite:///x.db``).
Queries are SQLAlchemy ``text()`` with bound parameters: the run's cutoff is ``:cutoff``.
Errors name the URL without its password.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from forecastflow.connections import SQL_DRIVERS, get_connection
from forecastflow.data.sources import SourceError, SourceOptions, SourceUnavailableError
from forecastflow.errors import UserInputError

log = logging.getLogger(__name__)

# A cutoff for runs without one (the CLI): later than any real row, valid in every database.
NO_CUTOFF = datetime(9999, 12, 31)
_ENGINES: dict[str, Any] = {}
# Operational errors that a retry may fix (the server is down, starting or overloaded); the
# others (credentials, unknown database, role, column: MySQL drivers call them operational
# too) are bad input.
_UNREACHABLE = ("connection refused", "can't connect", "could not connect", "timed out",
                "timeout", "server closed the connection", "lost connection", "gone away",
                "could not translate host name", "name or service not known",
                "too many connections", "is starting up", "is shutting down")


def database_url(uri: str) -> Any:
    """The ``sqlalchemy.URL`` of ``sql://<conn id>`` or a SQLAlchemy URL (drivers chosen:
    psycopg2 for PostgreSQL, PyMySQL for MySQL/MariaDB)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    parts = urlsplit(uri)
    if parts.scheme == "sql":
        if not parts.hostname or parts.path.strip("/"):
            raise SourceError(f"{uri!r}: expected sql://<connection id>")
        try:
            return get_connection(parts.netloc).sqlalchemy_url()
        except UserInputError as err:
            raise SourceError(f"{uri}: {err}") from None
    try:
        url = make_url(uri)
    except ArgumentError as err:
        raise SourceError(f"{uri!r} is not a database URL: {err}") from None
    if "+" not in url.drivername and url.drivername in SQL_DRIVERS:
        url = url.set(drivername=SQL_DRIVERS[url.drivername])
    return url


def display(url: Any) -> str:
    return url.render_as_string(hide_password=True)


def engine(url: Any) -> Any:
    """One engine (connection pool) per URL per process; connections time out in 10 s."""
    from sqlalchemy import create_engine

    key = url.render_as_string(hide_password=False)
    if key not in _ENGINES:
        args = {} if url.get_backend_name() == "sqlite" else {"connect_timeout": 10}
        _ENGINES[key] = create_engine(url, pool_pre_ping=True, connect_args=args)
    return _ENGINES[key]


def _first_line(err: Exception) -> str:
    orig = getattr(err, "orig", None) or err
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


@contextmanager
def translated(where: str) -> Iterator[None]:
    """SQLAlchemy and driver errors (also as wrapped by pandas) as ``SourceError`` (bad input:
    missing table, query error, wrong credentials) or ``SourceUnavailableError`` (the database
    is down), naming ``where``."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except pd.errors.DatabaseError as err:
        cause = err.__cause__
        if isinstance(cause, SQLAlchemyError):
            raise _translate(cause, where) from None
        raise SourceError(f"{where}: {_first_line(err)}") from None
    except SQLAlchemyError as err:
        raise _translate(err, where) from None
    except ModuleNotFoundError as err:
        raise SourceError(f"{where}: database driver {err.name!r} is not installed") from None


def _translate(err: Exception, where: str) -> Exception:
    from sqlalchemy import exc

    if isinstance(err, exc.NoSuchTableError):
        return SourceError(f"{where}: table {str(err)!r} does not exist")
    message = _first_line(err)
    if isinstance(err, exc.OperationalError) and any(
            text in message.lower() for text in _UNREACHABLE):
        return SourceUnavailableError(f"{where}: database unreachable: {message}")
    return SourceError(f"{where}: {message}")  # programming, data, integrity, bad URL


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while rows arrive: a million row tuples would set it off
    again and again for nothing (they hold no cycles), a third of the read's time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _temporal(column: Any) -> bool:
    try:
        return issubclass(column.type.python_type, (date, datetime))
    except NotImplementedError:
        return False


def _naive_utc(stamp: pd.Timestamp) -> datetime:
    """A cutoff as databases compare it with DATE/TIMESTAMP columns: UTC without a zone, to
    the microsecond (an inclusive cutoff 1 ns before midnight keeps that day's rows)."""
    stamp = pd.Timestamp(stamp)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.floor("us").to_pydatetime()


def _statement(conn: Any, options: SourceOptions, where: str,
               ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The SELECT to run, its bound parameters and what lineage records about it."""
    from sqlalchemy import MetaData, Table, select, text

    cutoff = NO_CUTOFF if options.cutoff is None else _naive_utc(options.cutoff)
    if options.query:
        stmt = text(options.query)
        needed = set(stmt.compile().params)
        given = {**options.query_params, "cutoff": cutoff}
        missing = sorted(needed - set(given))
        if missing:
            raise SourceError(f"{where} needs bound parameter(s) {missing}: declare them in "
                              "query_params (:cutoff is the run's cutoff)")
        digest = hashlib.sha256(options.query.encode()).hexdigest()[:16]
        params = {name: given[name] for name in needed}
        return stmt, params, {"query_sha256": digest,
                              "query_params": {k: str(v) for k, v in params.items()}}
    schema, _, name = str(options.table).rpartition(".")
    table = Table(name, MetaData(), schema=schema or None, autoload_with=conn)
    wanted = [table.c[c] for c in options.columns if c in table.c] or list(table.c)
    stmt = select(*wanted)
    time = table.c.get(options.time_column or "")
    filtered = time is not None and options.cutoff is not None and _temporal(time)
    if filtered:
        stmt = stmt.where(time <= cutoff)
    digest = hashlib.sha256(str(stmt).encode()).hexdigest()[:16]
    return stmt, {}, {"table": options.table, "columns": [c.name for c in wanted],
                      "query_sha256": digest, "filtered_at": str(cutoff) if filtered else None}


def read_sql_source(uri: str, options: SourceOptions) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A table's needed columns (rows up to the cutoff when its time column is a date) or a
    query's rows, streamed in chunks with a progress line each."""
    if bool(options.table) == bool(options.query):
        raise SourceError(f"{uri}: a SQL source needs exactly one of table or query")
    url = database_url(uri)
    where = f"{display(url)} " + (f"table {options.table}" if options.table else "query")
    chunks, rows = [], 0
    with translated(where), engine(url).connect() as conn, _collector_paused():
        stmt, params, record = _statement(conn, options, where)
        stream = conn.execution_options(stream_results=True, yield_per=options.chunksize)
        for chunk in pd.read_sql(stmt, stream, params=params or None,
                                 chunksize=options.chunksize):
            chunks.append(chunk)
            rows += len(chunk)
            if rows >= options.chunksize:
                log.info("%s: %d rows read", where, rows)
    frame = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0] if chunks \
        else pd.DataFrame(columns=record.get("columns") or [])
    return frame, {"kind": "sql", "url": display(url), **record}
