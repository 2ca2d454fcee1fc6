"""Named connections: an id (``warehouse``, ``crm_s3``) resolved to a URL, login and extras.

The same ids as Airflow's connections. Outside Airflow (the CLI, tests, the REST server) an id
is read from the environment variable ``AIRFLOW_CONN_<ID>`` in Airflow's URI or JSON form;
inside a task the orchestration layer registers a resolver that asks Airflow (its metadata
database and secrets backends). Nothing here imports Airflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from forecastflow.errors import UserInputError

# SQLAlchemy driver names for Airflow connection types (and URL schemes).
SQL_DRIVERS = {
    "postgres": "postgresql+psycopg2", "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql", "sqlite": "sqlite",
}


class ConnectionNotFoundError(UserInputError):
    """No connection with that id in the environment or Airflow."""


@dataclass(frozen=True)
class Connection:
    """The parts of a connection that sources and stores use."""

    conn_id: str
    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def sqlalchemy_url(self) -> Any:
        """A ``sqlalchemy.URL`` for a database connection (password kept, never printed)."""
        from sqlalchemy import URL

        driver = SQL_DRIVERS.get(self.conn_type.replace("_", "").lower())
        if driver is None:
            raise UserInputError(f"connection {self.conn_id!r} has type {self.conn_type!r}, "
                                 f"not a database; supported: {sorted(SQL_DRIVERS)}")
        if driver == "sqlite":
            return URL.create("sqlite", database=self.host or self.schema)
        return URL.create(driver, username=self.login, password=self.password,
                          host=self.host, port=self.port, database=self.schema)


Resolver = Callable[[str], "Connection | None"]
_RESOLVERS: list[Resolver] = []


def register_resolver(resolver: Resolver) -> None:
    """Ask ``resolver`` for ids missing from the environment (Airflow's, inside tasks)."""
    if resolver not in _RESOLVERS:
        _RESOLVERS.append(resolver)


def env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def get_connection(conn_id: str) -> Connection:
    """The connection ``conn_id`` from ``AIRFLOW_CONN_<ID>`` or a registered resolver."""
    value = os.environ.get(env_name(conn_id))
    if value:
        return parse(conn_id, value)
    for resolver in _RESOLVERS:
        found = resolver(conn_id)
        if found is not None:
            return found
    raise ConnectionNotFoundError(
        f"no connection {conn_id!r}: set {env_name(conn_id)} to its URI (for example "
        f"postgresql://user@host:5432/db) or create the Airflow connection {conn_id!r}")


def parse(conn_id: str, value: str) -> Connection:
    """A connection from Airflow's URI (``type://login:pw@host:port/schema?extra=v``) or JSON
    (``{"conn_type": ..., "host": ...}``) form."""
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as err:
            raise UserInputError(f"{env_name(conn_id)} is not valid JSON: {err}") from None
        extra = data.get("extra") or {}
        return Connection(conn_id, str(data.get("conn_type", "")), data.get("host"),
                          data.get("port"), data.get("login"), data.get("password"),
                          data.get("schema"),
                          json.loads(extra) if isinstance(extra, str) else dict(extra))
    parts = urlsplit(value)
    if not parts.scheme:
        raise UserInputError(f"{env_name(conn_id)}={masked(value)!r} has no scheme "
                             "(postgresql://, mysql://, aws://, ...)")
    extra: dict[str, Any] = dict(parse_qsl(parts.query))
    if "__extra__" in extra:
        extra = json.loads(extra["__extra__"])
    path = unquote(parts.path.lstrip("/")) or None
    return Connection(conn_id, parts.scheme.split("+")[0].replace("-", "_"),
                      unquote(parts.hostname) if parts.hostname else None, parts.port,
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None, path, extra)


def masked(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``: for logs, tags and DAG docs."""
    try:
        password = urlsplit(url).password
    except ValueError:  # not a URL (a Windows path, say)
        return url
    return url.replace(f":{password}@", ":***@", 1) if password else url
