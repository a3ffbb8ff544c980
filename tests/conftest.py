"""Shared fixtures: database URLs for SQLite and a real PostgreSQL server; a loopback URL where
nothing listens."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import extras, pg

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PgServer]:
    pytest.importorskip("psycopg", reason=extras.POSTGRES)
    if pg.find_bindir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries missing in CI: .ci/run must install them")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    server = pg.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty database on each backend: the same tests run on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server: pg.PgServer = request.getfixturevalue("pg_server")
    return server.create_db(f"qf_{os.getpid()}_{next(_counter)}")


@pytest.fixture
def new_db(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``label -> URL`` of a fresh, empty database per call, on the backend ``db_url`` is
    parametrised over (SQLite files named by the label)."""
    if db_url.startswith("sqlite"):
        return lambda label: f"sqlite:///{tmp_path / label}.db"
    server: pg.PgServer = request.getfixturevalue("pg_server")
    return lambda label: server.create_db(f"qf_{os.getpid()}_{next(_counter)}")


@pytest.fixture
def closed_port_url() -> str:
    """A loopback base URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
