"""The databases the store's tests run on: SQLite in a temporary file, and a real
PostgreSQL server started for the session (tests/postgres_server.py). Without PostgreSQL
its tests skip with the reason, except under CI=true, where they fail."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer, find_bindir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        reason = ("PostgreSQL is not installed (no initdb): scripts/install_test_tools.sh "
                  "installs Debian's postgresql package")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = PostgresServer.start(bindir)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database on the session's PostgreSQL server."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """Each test that takes it runs on both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'exchanges.sqlite3'}"
    return request.getfixturevalue("postgres_url")
