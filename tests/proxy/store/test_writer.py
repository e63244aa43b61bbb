"""The writer and retention on real databases (SQLite and PostgreSQL): drops when the
queue is full, a failing database, a writer process that dies or cannot start, deletion by
age and by size, and labels going with their exchange."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import signal
import subprocess
import sys
import weakref
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, insert, select

from detectors.verdict import Verdict
from policies.decision import Decision
from policies.schema import Route, RouteStore
from proxy.chat.gate_session import Answer
from proxy.config import Settings
from proxy.store.database import StoreError, open_database
from proxy.store.ids import new_response_id
from proxy.store.models import Exchange, Feedback
from proxy.store.writer import ExchangeStore
from tests.fake_upstream import token_logprobs


def decision() -> Decision:
    return Decision(verdict=Verdict.ANSWER, returned=Verdict.ANSWER, action="annotate",
                    risk=0.1, reasons=("halt: risk 0.10 < 0.50",), detectors={},
                    profile="judged", route="kept", combine="any", fail_mode="closed")


def session(route: str = "kept") -> SimpleNamespace:
    return SimpleNamespace(response_id=new_response_id(), route=route, model="fake",
                           messages=[{"role": "user", "content": "hi"}],
                           ctx=SimpleNamespace(request_id="r", key_name=None),
                           calibration=SimpleNamespace(bundle=None))


async def make_store(url: str, **store) -> tuple[ExchangeStore, CollectorRegistry]:
    settings = Settings(store={"url": url, **store})
    engine = await open_database(settings)
    policy = SimpleNamespace(routes=(Route(name="kept", default=True, profile="x",
                                           store=RouteStore(sample=1.0)),))
    registry = CollectorRegistry()
    return ExchangeStore(engine, settings.store, registry, lambda: policy), registry


async def count(store: ExchangeStore, table) -> int:
    async with store.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar()


async def test_a_full_queue_drops_and_counts_without_waiting(store_url):
    store, registry = await make_store(store_url, queue_size=2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    queued = [store.offer(session(), decision()) for _ in range(5)]  # writer not started
    assert loop.time() - start < 0.05  # never waits for room
    assert queued == [True, True, False, False, False]
    dropped = registry.get_sample_value("hallgate_store_dropped_total",
                                        {"reason": "queue_full"})
    assert dropped == 3 and registry.get_sample_value("hallgate_store_queue_depth") == 2
    await store.start()
    await store.flush()
    assert await count(store, Exchange) == 2
    assert registry.get_sample_value("hallgate_store_written_total") == 2
    await store.close()
    await store.engine.dispose()


async def test_an_exchange_is_framed_at_the_next_loop_turn_and_its_objects_let_go(
        store_url):
    """The request's own turn pays no frame; the next turn keeps the frame's bytes and
    none of the request's objects, so its answer's token dicts die young."""
    store, registry = await make_store(store_url)
    answer = Answer(0, "Paris.", token_logprobs(["Paris", "."], -0.05, 3))
    watched = weakref.ref(answer)
    assert store.offer(session(), decision(), answer)
    assert store.framed == [] and registry.get_sample_value("hallgate_store_queue_depth") == 1
    await asyncio.sleep(0)
    assert len(store.framed) == 1
    del answer
    gc.collect()
    assert watched() is None
    await store.start()
    await store.flush()
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(Exchange.logprobs))).scalar_one()
    assert stored["chosen"] == [-0.05, -0.05] and len(stored["top"][0]) == 3
    assert registry.get_sample_value("hallgate_store_queue_depth") == 0
    await store.close()
    await store.engine.dispose()


async def test_an_exchange_that_cannot_be_framed_is_dropped_and_counted(store_url):
    store, registry = await make_store(store_url)
    await store.start()
    circular: dict = {}
    circular["itself"] = circular  # neither orjson nor the stdlib can write it
    unframable = dataclasses.replace(decision(), detectors={"halt": circular})
    kept = session()
    assert store.offer(session(), unframable) and store.offer(kept, decision())
    await asyncio.wait_for(store.flush(), 15)
    assert registry.get_sample_value("hallgate_store_dropped_total",
                                     {"reason": "write_error"}) == 1
    assert registry.get_sample_value("hallgate_store_written_total") == 1
    assert not store.pending
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(Exchange.response_id))).scalars().all()
    assert stored == [kept.response_id]
    await store.close()
    await store.engine.dispose()


async def test_a_failing_database_drops_the_batch_and_the_writer_goes_on(store_url):
    store, registry = await make_store(store_url)
    await store.start()
    async with store.engine.begin() as conn:  # the table the writer needs is gone
        await conn.exec_driver_sql("ALTER TABLE exchanges RENAME TO gone")
    store.offer(session(), decision())
    await store.flush()
    assert registry.get_sample_value("hallgate_store_dropped_total",
                                     {"reason": "write_error"}) == 1
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE gone RENAME TO exchanges")
    store.offer(session(), decision())
    await store.flush()
    assert registry.get_sample_value("hallgate_store_written_total") == 1
    await store.close()
    await store.engine.dispose()


def row(response_id: str, created: datetime) -> dict:
    return {"response_id": response_id, "created_at": created, "model": "fake",
            "detectors": {}, "reasons": [], "prompt_sha256": "0" * 64}


async def test_retention_deletes_by_age_then_by_size_and_their_labels_go_too(store_url):
    store, registry = await make_store(store_url, max_age_days=7, max_rows=3)
    now = datetime.now(UTC)
    ages = [30, 10, 6, 5, 4, 3, 0]  # days old, oldest first
    ids = [f"chatcmpl-{i:032x}" for i in range(len(ages))]
    async with store.engine.begin() as conn:
        await conn.execute(insert(Exchange), [row(i, now - timedelta(days=a))
                                              for i, a in zip(ids, ages, strict=True)])
        await conn.execute(insert(Feedback), [
            {"response_id": i, "created_at": now, "label": "correct"} for i in ids])
    deleted = await store.prune(now)
    assert deleted == {"age": 2, "size": 2}  # 30 and 10 days old; then the two oldest left
    async with store.engine.connect() as conn:
        kept = (await conn.execute(select(Exchange.response_id).order_by(Exchange.id))
                ).scalars().all()
        labelled = (await conn.execute(select(Feedback.response_id).order_by(Feedback.id))
                    ).scalars().all()
    assert kept == ids[4:] and labelled == ids[4:]
    assert registry.get_sample_value("hallgate_store_pruned_total", {"reason": "age"}) == 2
    await store.engine.dispose()


async def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_writer_process_that_dies_is_counted_replaced_and_closed_with_the_store(
        tmp_path):
    store, registry = await make_store(f"sqlite:///{tmp_path / 'exchanges.sqlite3'}")
    await store.start()
    first = store.writer.proc
    os.kill(first.pid, signal.SIGSTOP)  # it stops reading: what is handed over stays in flight
    for _ in range(3):
        assert store.offer(session(), decision())
    await wait_until(lambda: len(store.in_flight) == 3)
    os.kill(first.pid, signal.SIGKILL)
    await wait_until(lambda: store.writer is not None and store.writer.proc is not first)
    assert registry.get_sample_value("hallgate_store_dropped_total",
                                     {"reason": "write_error"}) == 3
    assert not store.pending and not store.in_flight
    assert store.offer(session(), decision())
    await store.flush()
    assert registry.get_sample_value("hallgate_store_written_total") == 1
    assert await count(store, Exchange) == 1
    second = store.writer.proc
    await store.close()
    assert second.returncode == 0  # its input closed, it wrote what it had and exited
    await store.engine.dispose()


async def test_a_writer_process_that_cannot_start_refuses_the_store(tmp_path, monkeypatch):
    store, _ = await make_store(f"sqlite:///{tmp_path / 'exchanges.sqlite3'}")
    monkeypatch.setattr(sys, "executable", "/bin/false")  # exits at once, says nothing
    with pytest.raises(StoreError, match="writer process did not start"):
        await store.start()
    await store.engine.dispose()


def test_the_writer_process_loads_neither_torch_nor_the_gateway():
    """Its memory and start-up stay small (about 60 MB and 0.3 s, not torch's 330 MB)."""
    probe = ("import sys, proxy.store.writer_process; print(sorted(m for m in "
             "('torch', 'numpy', 'fastapi', 'litellm', 'policies', 'proxy.config') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
