"""The store's writer: judged exchanges go to the database off the request path.

    request path                         background (one task per gateway)
    ------------                         ---------------------------------
    offer(session, decision, answer)     drain: queue -> batches (gathered for
                                           flush_interval_s) -> one INSERT each
      route's sample share? no -> done   retention: every retention_interval_s delete
      queue full? drop + count            rows older than max_age_days, then the oldest
      else put_nowait (never waits)       beyond max_rows, then labels left without one

The request pays a random draw and a ``put_nowait``; building the row (the decision's
dict, the redaction, the logprob matrix) and the database round trip happen in the
drain task. A database that is down or slow fills the queue; what does not fit is
dropped and counted (``hallgate_store_dropped_total{reason=...}``), and the failure is
logged at most once per ``LOG_EVERY_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import JSON, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.config import Settings, StoreSettings
from proxy.store.database import encode, head_revision, open_database
from proxy.store.ids import FIND_WAIT_S, minted_at
from proxy.store.models import Exchange, Feedback
from proxy.store.records import exchange_row

log = logging.getLogger("hallgate.store")
LOG_EVERY_S = 60.0  # at most one log line per failure kind and interval
POLL_S = 0.01  # a gathering batch looks at the queue this often
JSON_COLUMNS = tuple(c.name for c in Exchange.__table__.columns if isinstance(c.type, JSON))
REREAD_S = 0.1  # ... re-reading the database this often for another replica's exchange


class JudgedSession(Protocol):
    """What the store reads of a gate session (proxy.gatekeeper.PolicySession)."""

    response_id: str
    route: str
    model: str
    messages: list[dict]
    ctx: Any  # .request_id, .key_name
    calibration: Any  # calibration.binding.CalibrationUse: .bundle (None: uncalibrated)


@dataclass(slots=True)
class Pending:
    """A sampled exchange waiting in the queue: references only, no copies."""

    created_at: float
    response_id: str
    request_id: str | None
    model: str
    key_name: str | None
    bundle_id: str | None  # the bundle that judged it (name@digest), None without one
    messages: list[dict]
    decision: Any  # policies.Decision
    answer: Any  # proxy.chat.gate_session.Answer, or None (decided before the answer)


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry, depth: Callable[[], int]):
        self.sampled = Counter("hallgate_store_sampled", "Judged exchanges drawn for the "
                               "store by their route's sample share", registry=registry)
        self.written = Counter("hallgate_store_written", "Judged exchanges written to the "
                               "store", registry=registry)
        self.dropped = Counter("hallgate_store_dropped", "Sampled exchanges not stored: "
                               "queue_full (the writer is behind) or write_error (the "
                               "database failed)", ["reason"], registry=registry)
        self.pruned = Counter("hallgate_store_pruned", "Exchanges deleted by retention",
                              ["reason"], registry=registry)
        self.feedback = Counter("hallgate_feedback", "Labels posted to /v1/feedback",
                                ["label"], registry=registry)
        Gauge("hallgate_store_queue_depth", "Sampled exchanges waiting for the writer",
              registry=registry).set_function(depth)
        self.queue_full = self.dropped.labels("queue_full")
        self.write_error = self.dropped.labels("write_error")


class ExchangeStore:
    def __init__(self, engine: AsyncEngine, settings: StoreSettings,
                 registry: CollectorRegistry, policy: Callable[[], Any]):
        self.engine = engine
        self.settings = settings
        self.policy = policy  # the current Policy (reloads included)
        self.queue: asyncio.Queue[Pending] = asyncio.Queue(settings.queue_size)
        self.metrics = StoreMetrics(registry, self.queue.qsize)
        self.pending: set[str] = set()  # response ids queued, not yet written
        self._written = asyncio.Condition()
        self._shares: tuple[Any, dict[str, float]] = (None, {})
        self._tasks: list[asyncio.Task] = []
        self._last_log: dict[str, float] = {}
        self.failing = False  # the last batch write failed (the database is down or slow)

    # --- request path ----------------------------------------------------------------

    def share(self, route: str) -> float:
        """The route's sample share under the current policy (cached per policy)."""
        policy = self.policy()
        cached, shares = self._shares
        if cached is not policy:
            shares = {r.name: (r.store.sample if r.store is not None else self.settings.sample)
                      for r in getattr(policy, "routes", ())}
            self._shares = (policy, shares)
        return shares.get(route, self.settings.sample)

    def offer(self, session: JudgedSession, decision: Any, answer: Any = None) -> bool:
        """Queue the exchange if its route samples it and the queue has room; never
        waits. True when queued."""
        share = self.share(session.route)
        if share <= 0.0 or (share < 1.0 and random.random() >= share):
            return False
        self.metrics.sampled.inc()
        bundle = session.calibration.bundle
        item = Pending(time.time(), session.response_id, session.ctx.request_id,
                       session.model, session.ctx.key_name,
                       bundle.name if bundle is not None else None, session.messages,
                       decision, answer)
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.metrics.queue_full.inc()
            self._log_once("queue_full", "store queue full (%d): dropping exchanges",
                           self.settings.queue_size)
            return False
        self.pending.add(item.response_id)
        return True

    def health(self) -> dict:
        """What /readyz says of the store (never what makes the gateway unready: requests
        do not depend on it once it is open)."""
        return {"state": "failing" if self.failing else "ok",
                "queue_depth": self.queue.qsize()}

    # --- background ------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._drain(), name="store-writer"),
                       asyncio.create_task(self._retention(), name="store-retention")]

    async def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to ``timeout``), then stop the tasks."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def flush(self) -> None:
        """Wait until every queued exchange is written (or dropped)."""
        await self.queue.join()

    def _row(self, item: Pending) -> dict:
        """The exchange's row, its JSON columns already encoded: a batch waits up to
        ``flush_interval_s`` for its write, and as bytes its rows hold no containers the
        collector would walk on every pass meanwhile (lists of lists of floats would)."""
        row = self._values(item)
        for column in JSON_COLUMNS:
            if row[column] is not None:
                row[column] = encode(row[column])
        return row

    def _values(self, item: Pending) -> dict:
        answer = item.answer
        return exchange_row(
            response_id=item.response_id, request_id=item.request_id,
            created_at=item.created_at, model=item.model, key_name=item.key_name,
            messages=item.messages, decision=item.decision.to_dict(),
            answer_text=answer.text if answer is not None else None,
            tokens=answer.tokens if answer is not None else None,
            include_prompt=self.settings.include_prompt, bundle_id=item.bundle_id)

    async def _gather(self) -> tuple[list[str], list[dict]]:
        """The next batch: its response ids and rows. Each row is built as soon as its
        exchange is taken from the queue, so the answer's token dicts die young (held for
        the whole flush interval they reach the collector's oldest generation, and full
        collections of this process's heap cost more than the rows); the batch then
        gathers for ``flush_interval_s``, looking at the queue every ``POLL_S``."""
        loop = asyncio.get_running_loop()
        ids: list[str] = []
        rows: list[dict] = []

        def take(item: Pending) -> None:
            ids.append(item.response_id)
            try:
                rows.append(self._row(item))
            except Exception as exc:  # a row that cannot be built is dropped, not the batch
                self.metrics.write_error.inc()
                self._log_once("row_error", "store row failed, exchange dropped: %r", exc)

        take(await self.queue.get())
        deadline = loop.time() + self.settings.flush_interval_s
        size = self.settings.batch_size
        while True:
            while len(ids) < size and not self.queue.empty():
                take(self.queue.get_nowait())
            left = deadline - loop.time()
            if len(ids) >= size or left <= 0:
                return ids, rows
            await asyncio.sleep(min(POLL_S, left))

    async def _drain(self) -> None:
        while True:
            # one transaction per row costs ~10x the CPU of a batched row
            # (bench/store_ab.py): batches gather for a moment
            ids, rows = await self._gather()
            try:
                if rows:
                    async with self.engine.begin() as conn:
                        await conn.execute(insert(Exchange), rows)
                    self.metrics.written.inc(len(rows))
                    self.failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failing = True
                self.metrics.write_error.inc(len(rows))
                self._log_once("write_error", "store write failed, %d exchanges dropped: %r",
                               len(rows), exc)
            finally:
                for response_id in ids:
                    self.pending.discard(response_id)
                    self.queue.task_done()
                async with self._written:
                    self._written.notify_all()

    async def _retention(self) -> None:
        while True:
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log_once("retention", "store retention failed: %r", exc)
            await asyncio.sleep(self.settings.retention_interval_s)

    async def prune(self, now: datetime | None = None) -> dict[str, int]:
        """Apply retention once: by age, then by size; labels whose exchange is gone go
        with it. The number of exchanges deleted for each reason."""
        now = now or datetime.now(UTC)
        deleted = {"age": 0, "size": 0}
        async with self.engine.begin() as conn:
            if self.settings.max_age_days is not None:
                cutoff = now - timedelta(days=self.settings.max_age_days)
                result = await conn.execute(delete(Exchange).where(Exchange.created_at < cutoff))
                deleted["age"] = result.rowcount or 0
            if self.settings.max_rows is not None:
                boundary = (await conn.execute(
                    select(Exchange.id).order_by(Exchange.id.desc())
                    .offset(self.settings.max_rows).limit(1))).scalar()
                if boundary is not None:
                    result = await conn.execute(delete(Exchange).where(Exchange.id <= boundary))
                    deleted["size"] = result.rowcount or 0
            if deleted["age"] or deleted["size"]:
                await conn.execute(delete(Feedback).where(
                    Feedback.response_id.not_in(select(Exchange.response_id))))
        for reason, count in deleted.items():
            if count:
                self.metrics.pruned.labels(reason).inc(count)
        return deleted

    def _log_once(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log.get(kind, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._last_log[kind] = now
            log.warning(message, *args)

    # --- reads and labels (the feedback endpoint) --------------------------------------

    async def find(self, response_id: str, wait_s: float = FIND_WAIT_S) -> dict | None:
        """The stored exchange's owner and time (``key_name``, ``created_at``). An
        exchange still in this gateway's queue is waited for, up to ``wait_s``; one that
        is not in the database yet while its id is younger than ``wait_s`` may be in
        another replica's queue, so the database is read again every ``REREAD_S`` until
        the id is ``wait_s`` old."""
        deadline = time.monotonic() + wait_s
        async with self._written:
            while response_id in self.pending and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._written.wait(), deadline - time.monotonic())
        made = minted_at(response_id)
        while True:
            row = await self._read(response_id)
            if row is not None or made is None or time.time() >= made + wait_s:
                return row
            await asyncio.sleep(min(REREAD_S, max(0.0, made + wait_s - time.time())))

    async def _read(self, response_id: str) -> dict | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(Exchange.response_id, Exchange.key_name, Exchange.created_at)
                .where(Exchange.response_id == response_id))).first()
        return dict(row._mapping) if row is not None else None

    async def add_feedback(self, response_id: str, label: str, *, score: float | None,
                           gold: str | None, comment: str | None,
                           key_name: str | None) -> tuple[datetime, int]:
        """Append a label (every one is kept; the newest counts); its time and how many
        labels the exchange has now."""
        created = datetime.now(UTC)
        async with self.engine.begin() as conn:
            await conn.execute(insert(Feedback).values(
                response_id=response_id, created_at=created, label=label, score=score,
                gold=gold, comment=comment, key_name=key_name))
            count = (await conn.execute(select(func.count()).select_from(Feedback)
                                        .where(Feedback.response_id == response_id))).scalar()
        self.metrics.feedback.labels(label).inc()
        return created, int(count or 0)


@contextlib.asynccontextmanager
async def open_store(settings: Settings, registry: CollectorRegistry,
                     policy: Callable[[], Any]) -> AsyncIterator[ExchangeStore]:
    """The store for this app's life: database opened and migrated, writer running;
    at exit what is queued is written (briefly) and the engine closed."""
    engine = await open_database(settings)
    store = ExchangeStore(engine, settings.store, registry, policy)
    log.info("store %s open (schema revision %s)",
             engine.url.render_as_string(hide_password=True), head_revision())
    store.start()
    try:
        yield store
    finally:
        await store.close()
        await engine.dispose()
