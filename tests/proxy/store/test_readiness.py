"""/readyz and the store: a gateway whose database cannot be opened never becomes ready
(it refuses to start); once serving, a failing database is reported by /readyz and
counted, and neither requests nor readiness fail because of it."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from proxy.app import create_app
from proxy.embedded import free_port
from proxy.store.database import StoreError
from tests.proxy.store.helpers import client, metric, store_settings, wait_written

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


async def test_a_gateway_whose_database_is_unreachable_is_never_ready(fake_upstream,
                                                                       tmp_path):
    url = f"postgresql://hallgate:x@127.0.0.1:{free_port()}/hallgate"
    app = create_app(store_settings(fake_upstream, tmp_path, url=url, connect_timeout_s=1.0))
    probe = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    assert (await probe.get("/readyz")).status_code == 503
    with pytest.raises(StoreError, match="cannot open it"):
        async with app.router.lifespan_context(app):
            pass  # never reached: the start fails before the gateway serves
    assert (await probe.get("/readyz")).json() == {"status": "starting"}


def test_a_failing_database_is_reported_while_the_gateway_stays_ready(
        fake_upstream, start_gateway, tmp_path):
    url = start_gateway(store_settings(fake_upstream, tmp_path))
    client(url).chat.completions.create(model="fake", messages=PROMPT)
    wait_written(url, 1)
    assert httpx.get(f"{url}/readyz").json() == {
        "status": "ready", "store": {"state": "ok", "queue_depth": 0, "in_flight": 0}}
    with sqlite3.connect(tmp_path / "exchanges.sqlite3") as conn:
        conn.execute("DROP TABLE exchanges")  # every later write fails
    answer = client(url).chat.completions.create(model="fake", messages=PROMPT)
    assert answer.choices[0].message.content
    deadline = time.monotonic() + 10
    while metric(url, 'hallgate_store_dropped_total{reason="write_error"}') < 1:
        assert time.monotonic() < deadline, "the failed write was not counted"
        time.sleep(0.02)
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["store"]["state"] == "failing"
