"""Real services for the tests: an S3 server on loopback (moto's threaded server), a database
of its own on the machine's PostgreSQL (127.0.0.1:5432, trust auth) and MariaDB (127.0.0.1:3306,
root, empty password). A test skips only when the service is absent, and says so."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
MARIADB_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 server on a free loopback port for the whole session."""
    from moto.server import ThreadedMotoServer

    from tests.conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client on the loopback server, with the process's AWS settings pointing there
    (``AWS_ENDPOINT_URL``) and a fresh bucket (``s3.bucket``) per test."""
    import boto3

    for key, value in {**AWS_ENV, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.bucket = f"ff-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=client.bucket)
    return client


def _database(admin_url: str, url_of: Any, create: str, drop: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"forecastflow_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(create.format(name=name)))
    try:
        yield url_of(name)
    finally:
        from forecastflow.data import sql

        for key in [k for k in sql._ENGINES if name in k]:
            sql._ENGINES.pop(key).dispose()
        with admin.connect() as conn:
            conn.execute(text(drop.format(name=name)))
        admin.dispose()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A database of its own on the machine's PostgreSQL, dropped afterwards."""
    if not listening(5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    yield from _database(PG_ADMIN, lambda name: f"postgresql://postgres@127.0.0.1:5432/{name}",
                         'CREATE DATABASE "{name}"', 'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    """A database of its own on the machine's MariaDB, dropped afterwards."""
    if not listening(3306):
        pytest.skip("MariaDB is not running on 127.0.0.1:3306")
    yield from _database(MARIADB_ADMIN, lambda name: f"mysql://root@127.0.0.1:3306/{name}",
                         "CREATE DATABASE `{name}`", "DROP DATABASE `{name}`")
