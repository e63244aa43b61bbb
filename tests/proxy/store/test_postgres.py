"""The store on a real PostgreSQL server (started by the suite): exchanges and labels
written by the gateway, replicas sharing one database, and a migration from an old
schema."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import asyncpg
import httpx

from proxy.store.database import create_engine, migrate
from tests.proxy.store.helpers import client, metric, store_settings, wait_written

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


async def fetch(url: str, query: str, *args) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def test_the_gateway_stores_exchanges_and_labels_in_postgresql(
        fake_upstream, start_gateway, tmp_path, postgres_url):
    url = start_gateway(store_settings(fake_upstream, tmp_path, url=postgres_url))
    rid = client(url).chat.completions.create(model="fake", messages=PROMPT).id
    wait_written(url, 1)
    labelled = httpx.post(f"{url}/v1/feedback", json={"id": rid, "label": "incorrect"})
    assert labelled.status_code == 200, labelled.text
    [row] = await fetch(postgres_url, "SELECT * FROM exchanges")
    assert row["response_id"] == rid and row["route"] == "kept"
    assert row["created_at"].tzinfo is not None
    matrix = json.loads(row["logprobs"])
    assert len(matrix["chosen"]) == len(fake_upstream.script.text.split())
    assert row["prompt"] is None and row["answer"] is None
    [label] = await fetch(postgres_url, "SELECT * FROM feedback")
    assert (label["response_id"], label["label"]) == (rid, "incorrect")


async def test_two_gateways_on_one_database_take_labels_for_each_others_answers(
        fake_upstream, start_gateway, tmp_path, postgres_url):
    first = start_gateway(store_settings(fake_upstream, tmp_path, url=postgres_url))
    second = start_gateway(store_settings(fake_upstream, tmp_path, url=postgres_url))
    ids = {gw: client(gw).chat.completions.create(model="fake", messages=PROMPT).id
           for gw in (first, second)}
    wait_written(first, 1)
    wait_written(second, 1)
    for answered_by, labelled_by in ((first, second), (second, first)):
        resp = httpx.post(f"{labelled_by}/v1/feedback",
                          json={"id": ids[answered_by], "label": "correct"})
        assert resp.status_code == 200, resp.text
    rows = await fetch(postgres_url, "SELECT response_id FROM feedback ORDER BY id")
    assert [r["response_id"] for r in rows] == [ids[first], ids[second]]


async def test_a_label_posted_at_once_to_another_replica_waits_for_the_write(
        fake_upstream, start_gateway, tmp_path, postgres_url):
    # the answering replica gathers its batch for 1.5 s: the label reaches the other
    # replica before the exchange reaches the database
    slow = start_gateway(store_settings(fake_upstream, tmp_path, url=postgres_url,
                                        flush_interval_s=1.5))
    other = start_gateway(store_settings(fake_upstream, tmp_path, url=postgres_url))
    rid = client(slow).chat.completions.create(model="fake", messages=PROMPT).id
    assert await fetch(postgres_url, "SELECT 1 FROM exchanges") == []
    resp = httpx.post(f"{other}/v1/feedback", json={"id": rid, "label": "correct"},
                      timeout=10)
    assert resp.status_code == 200, resp.text
    assert metric(slow, "hallgate_store_written_total") == 1


async def test_a_gateway_upgrades_an_old_postgresql_schema(fake_upstream, start_gateway,
                                                            tmp_path, postgres_url):
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+asyncpg://"))
    assert await migrate(engine, "auto", "0001") == "0001"
    await engine.dispose()
    assert not await fetch(postgres_url, "SELECT 1 FROM pg_tables WHERE tablename='feedback'")
    url = start_gateway(store_settings(fake_upstream, tmp_path, url=postgres_url))
    rid = client(url).chat.completions.create(model="fake", messages=PROMPT).id
    resp = httpx.post(f"{url}/v1/feedback", json={"id": rid, "label": "unsure"})
    assert resp.status_code == 200, resp.text
    [version] = await fetch(postgres_url, "SELECT version_num FROM alembic_version")
    assert version["version_num"] == "0002"


def postgres_pids(server) -> list[int]:
    """The server's postmaster and every process it started."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
    return [postmaster, *children]


def test_a_frozen_database_never_slows_a_request_and_its_drops_are_counted(
        fake_upstream, start_gateway, tmp_path, postgres_server):
    db_url = postgres_server.create_database()
    url = start_gateway(store_settings(fake_upstream, tmp_path, url=db_url, queue_size=3,
                                       batch_size=1, flush_interval_s=0.0))
    chat = client(url)
    chat.chat.completions.create(model="fake", messages=PROMPT)
    wait_written(url, 1)
    pids = postgres_pids(postgres_server)
    for pid in pids:  # the database stops answering, connections stay open
        os.kill(pid, signal.SIGSTOP)
    try:
        took = []
        for _ in range(12):
            start = time.perf_counter()
            chat.chat.completions.create(model="fake", messages=PROMPT)
            took.append(time.perf_counter() - start)
        dropped = metric(url, 'hallgate_store_dropped_total{reason="queue_full"}')
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    # two batches of one may sit in the stuck writer process, three in the queue; the rest
    # are dropped
    assert 7 <= dropped <= 9
    assert max(took) < 1.0, took  # no request waited for the database
    wait_written(url, 1 + 12 - dropped)  # the writer goes on once the database is back
