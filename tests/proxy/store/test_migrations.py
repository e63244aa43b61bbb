"""Schema migrations at start: an old schema is upgraded with its rows kept; `migrate:
check` and a schema from a newer gateway refuse to start with a message that says why."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import httpx
import pytest

from proxy.app import create_app
from proxy.config import Settings
from proxy.store.database import StoreError, create_engine, database_url, head_revision, migrate
from tests.proxy.store.helpers import client, store_settings


async def schema_at(path, revision: str) -> None:
    engine = create_engine(database_url(Settings(store={"path": str(path)})))
    assert await migrate(engine, "auto", revision) == revision
    await engine.dispose()


async def test_a_gateway_upgrades_an_old_schema_and_keeps_its_rows(
        fake_upstream, start_gateway, tmp_path):
    db = tmp_path / "exchanges.sqlite3"
    await schema_at(db, "0001")  # exchanges only, no feedback table yet
    old_id = "chatcmpl-" + f"{int(datetime.now(UTC).timestamp() * 1000):012x}" + "ab" * 10
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO exchanges (response_id, created_at, model, detectors, "
                     "reasons, prompt_sha256) VALUES (?, ?, 'fake', '{}', '[]', ?)",
                     (old_id, datetime.now(UTC).isoformat(sep=" "), "0" * 64))
    url = start_gateway(store_settings(fake_upstream, tmp_path))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (
            head_revision(),)
    labelled = httpx.post(f"{url}/v1/feedback", json={"id": old_id, "label": "correct"})
    assert labelled.status_code == 200, labelled.text  # the old row, the new table
    client(url).chat.completions.create(model="fake", messages=[{"role": "user",
                                                                 "content": "hi"}])


async def test_migrate_check_refuses_an_old_schema_and_says_what_to_do(tmp_path):
    db = tmp_path / "exchanges.sqlite3"
    await schema_at(db, "0001")
    engine = create_engine(database_url(Settings(store={"path": str(db)})))
    with pytest.raises(StoreError, match=r"revision 0001, this gateway needs 0002.*migrate: auto"):
        await migrate(engine, "check")
    await engine.dispose()


async def test_a_gateway_refuses_to_start_on_a_schema_it_does_not_know(fake_upstream,
                                                                        tmp_path):
    db = tmp_path / "exchanges.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999')")
    app = create_app(store_settings(fake_upstream, tmp_path))
    with pytest.raises(StoreError, match="revision 9999, which this gateway does not know"):
        async with app.router.lifespan_context(app):
            pass  # the start (lifespan) fails before the gateway serves anything
