"""The store's writer: judged exchanges go to the database off the request path.

    request path               gateway, background             writer process
    ------------               -------------------             --------------
    offer(session, ...)        next loop turn: frame it          batches -> rows -> INSERT
      route's share? no: done    (records.exchange_frame)       (proxy/store/writer_process)
      queue full? drop+count   feed: frames  ----------------->
      else call_soon(frame)    acks: counted, ids done  <-----   one ack per batch
                               retention: every retention_interval_s delete rows older
                                 than max_age_days, then the oldest beyond max_rows,
                                 then labels left without one

The request pays a random draw and a ``call_soon``. At the event loop's next turn (for a
JSON answer or a buffered stream, after the answer has gone to its socket) the exchange
becomes its frame, one orjson call, and the store keeps only those bytes: the request's
objects (its answer's token dicts above all) die young instead of waiting in a queue,
where a collection would find them alive and promote them (bench/store_cpu.py, a
100-token answer at c=64: 0.30 ms of the loop's CPU per stored exchange when they
waited, 0.15-0.19 ms framed at once). The frames go to the writer process in one write
to a pipe at most every ``FEED_S``; the row (the redaction, the hashes, the decision's
dicts) and the database round trip are the writer process's, on another core. A
database that is down or slow stops the writer process reading, the pipe fills, then the
queue: what does not fit is dropped and counted
(``hallgate_store_dropped_total{reason=...}``), and the failure is logged at most once
per ``LOG_EVERY_S``. A writer process that exits is started again; what it had been
handed and not acknowledged is counted as ``write_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.config import Settings, StoreSettings
from proxy.store.database import StoreError, head_revision, open_database
from proxy.store.ids import FIND_WAIT_S, minted_at
from proxy.store.models import Exchange, Feedback
from proxy.store.records import exchange_frame
from proxy.store.writer_process import frame

log = logging.getLogger("hallgate.store")
LOG_EVERY_S = 60.0  # at most one log line per failure kind and interval
REREAD_S = 0.1  # ... re-reading the database this often for another replica's exchange
RESTART_S = 1.0  # a writer process that exited is started again after this long
START_TIMEOUT_S = 60.0  # a writer process says it is ready within this
FEED_S = 0.01  # frames go to the writer process at most this often: one wake-up and one
# write per interval instead of one per exchange, and none during the request's own answer


class JudgedSession(Protocol):
    """What the store reads of a gate session (proxy.gatekeeper.PolicySession)."""

    response_id: str
    route: str
    model: str
    messages: list[dict]
    ctx: Any  # .request_id, .key_name
    calibration: Any  # calibration.binding.CalibrationUse: .bundle (None: uncalibrated)


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry, depth: Callable[[], int]):
        self.sampled = Counter("hallgate_store_sampled", "Judged exchanges drawn for the "
                               "store by their route's sample share", registry=registry)
        self.written = Counter("hallgate_store_written", "Judged exchanges written to the "
                               "store", registry=registry)
        self.dropped = Counter("hallgate_store_dropped", "Sampled exchanges not stored: "
                               "queue_full (the writer is behind) or write_error (the "
                               "database failed, or the writer process exited)", ["reason"],
                               registry=registry)
        self.pruned = Counter("hallgate_store_pruned", "Exchanges deleted by retention",
                              ["reason"], registry=registry)
        self.feedback = Counter("hallgate_feedback", "Labels posted to /v1/feedback",
                                ["label"], registry=registry)
        Gauge("hallgate_store_queue_depth", "Sampled exchanges waiting for the writer",
              registry=registry).set_function(depth)
        self.queue_full = self.dropped.labels("queue_full")
        self.write_error = self.dropped.labels("write_error")


class WriterProcess:
    """The gateway's end of one writer process (proxy/store/writer_process.py): frames go
    to its stdin, its acks come from its stdout, its log goes to the gateway's stderr."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc

    @classmethod
    async def start(cls, settings: dict, timeout: float = START_TIMEOUT_S) -> WriterProcess:
        """A writer process that has said it is ready; StoreError when it does not."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.store.writer_process",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        proc.stdin.write(frame(orjson.dumps(settings)))  # the URL's password: not in argv
        with contextlib.suppress(TimeoutError):
            if await asyncio.wait_for(proc.stdout.readline(), timeout) == b'{"ready":true}\n':
                return cls(proc)
        if proc.returncode is None:
            proc.kill()
        raise StoreError(f"the store's writer process did not start (exit code "
                         f"{await proc.wait()}); what it said is above")

    async def send(self, data: bytes) -> None:
        """Write to the process, waiting while its pipe is full (it is behind)."""
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def acks(self) -> AsyncIterator[dict]:
        """Its acks until it exits."""
        while line := await self.proc.stdout.readline():
            yield orjson.loads(line)

    async def close(self, timeout: float) -> None:
        """End its input (it writes what it has, then exits); kill it after ``timeout``."""
        if self.proc.returncode is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class ExchangeStore:
    def __init__(self, engine: AsyncEngine, settings: StoreSettings,
                 registry: CollectorRegistry, policy: Callable[[], Any]):
        self.engine = engine
        self.settings = settings
        self.policy = policy  # the current Policy (reloads included)
        self.queued = 0  # offered, not yet handed to the writer process (its queue)
        self.framed: list[tuple[str, bytes]] = []  # (response id, frame), in offer order
        self.metrics = StoreMetrics(registry, lambda: self.queued)
        self.pending: set[str] = set()  # response ids queued or handed over, not yet written
        self.in_flight: deque[str] = deque()  # handed to the writer process, in order
        self.writer: WriterProcess | None = None
        self.max_in_flight = 2 * settings.batch_size  # one batch written, one gathering
        self._written = asyncio.Condition()  # an ack came, or a queued exchange was dropped
        self._framed = asyncio.Event()  # set while ``framed`` holds frames
        self._waking: set[asyncio.Task] = set()  # _done(0) after a frame failed
        self._shares: tuple[Any, dict[str, float]] = (None, {})
        self._tasks: list[asyncio.Task] = []
        self._last_log: dict[str, float] = {}
        self.failing = False  # the last batch write failed, or the writer process is down

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
        if self.queued >= self.settings.queue_size:
            self.metrics.queue_full.inc()
            self._log_once("queue_full", "store queue full (%d): dropping exchanges",
                           self.settings.queue_size)
            return False
        self.queued += 1
        self.pending.add(session.response_id)
        asyncio.get_running_loop().call_soon(self._frame, session, decision, answer,
                                             time.time())
        return True

    def _frame(self, session: JudgedSession, decision: Any, answer: Any,
               created_at: float) -> None:
        """Frame one offered exchange, at the event loop's next turn: after a JSON answer
        or a buffered stream has been handed to its socket, and before the request's
        objects age."""
        bundle = session.calibration.bundle
        try:
            data = frame(exchange_frame(
                response_id=session.response_id, request_id=session.ctx.request_id,
                created_at=created_at, model=session.model, key_name=session.ctx.key_name,
                bundle_id=bundle.name if bundle is not None else None,
                messages=session.messages, decision=decision, answer=answer,
                include_prompt=self.settings.include_prompt))
        except Exception as exc:  # one exchange that cannot be sent is dropped
            self.metrics.write_error.inc()
            self._log_once("row_error", "store row failed, exchange dropped: %r", exc)
            self.queued -= 1
            self.pending.discard(session.response_id)
            waking = asyncio.get_running_loop().create_task(self._done(0))  # flush() waits
            self._waking.add(waking)
            waking.add_done_callback(self._waking.discard)
            return
        self.framed.append((session.response_id, data))
        self._framed.set()

    def health(self) -> dict:
        """What /readyz says of the store (never what makes the gateway unready: requests
        do not depend on it once it is open)."""
        return {"state": "failing" if self.failing else "ok",
                "queue_depth": self.queued, "in_flight": len(self.in_flight)}

    # --- background ------------------------------------------------------------------

    def writer_settings(self) -> dict:
        """What the writer process is told first (its database URL with the password)."""
        return {"url": self.engine.url.render_as_string(hide_password=False),
                "include_prompt": self.settings.include_prompt,
                "batch_size": self.settings.batch_size,
                "flush_interval_s": self.settings.flush_interval_s}

    async def start(self) -> None:
        """Start the writer process (StoreError when it does not start) and the tasks."""
        self.writer = await WriterProcess.start(self.writer_settings())
        self._tasks = [asyncio.create_task(self._run(), name="store-writer"),
                       asyncio.create_task(self._retention(), name="store-retention")]

    async def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to ``timeout``), then stop the tasks and the writer
        process."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.writer is not None:
            await self.writer.close(timeout)

    async def flush(self) -> None:
        """Wait until every queued exchange is written (or dropped)."""
        async with self._written:
            await self._written.wait_for(lambda: not self.queued and not self.in_flight)

    async def _run(self) -> None:
        """Feed the writer process and count its acks; one that exits is started again."""
        while True:
            writer = self.writer
            feeding = asyncio.create_task(self._feed(writer), name="store-feed")
            try:
                async for ack in writer.acks():
                    await self._acknowledged(ack)
            finally:
                feeding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeding
            code = await writer.proc.wait()
            lost = len(self.in_flight)
            self.failing = True
            self.metrics.write_error.inc(lost)
            await self._done(lost)
            self._log_once("writer_exit", "store writer process exited (code %s), %d "
                           "exchanges lost; starting another", code, lost)
            self.writer = None
            while self.writer is None:
                await asyncio.sleep(RESTART_S)
                try:
                    self.writer = await WriterProcess.start(self.writer_settings())
                except StoreError as exc:
                    self._log_once("writer_start", "%s", exc)

    async def _feed(self, writer: WriterProcess) -> None:
        """Frames -> the writer process, as many as are waiting at a time, and never more
        than ``max_in_flight`` unacknowledged: a writer process that is behind leaves the
        rest queued, and the queue fills and drops."""
        while True:
            await self._framed.wait()
            await asyncio.sleep(FEED_S)  # what comes meanwhile goes in the same write
            async with self._written:
                await self._written.wait_for(lambda: len(self.in_flight) < self.max_in_flight)
            room = self.max_in_flight - len(self.in_flight)
            taken, self.framed = self.framed[:room], self.framed[room:]
            if not self.framed:
                self._framed.clear()
            self.queued -= len(taken)
            self.in_flight.extend(response_id for response_id, _ in taken)
            try:
                await writer.send(b"".join(data for _, data in taken))
            except (ConnectionError, OSError):  # it exited: _run counts what it was handed
                return

    async def _acknowledged(self, ack: dict) -> None:
        written, error = int(ack["written"]), ack.get("error")
        self.metrics.written.inc(written)
        self.metrics.write_error.inc(int(ack["n"]) - written)
        if ack.get("row_error"):
            self._log_once("row_error", "store row failed, exchange dropped: %s",
                           ack["row_error"])
        if error:
            self._log_once("write_error", "store write failed, %d exchanges dropped: %s",
                           int(ack["n"]) - written, error)
        self.failing = bool(error)
        await self._done(int(ack["n"]))

    async def _done(self, n: int) -> None:
        """The first ``n`` exchanges in flight are written or dropped."""
        for _ in range(min(n, len(self.in_flight))):
            self.pending.discard(self.in_flight.popleft())
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
    try:
        await store.start()
    except StoreError:
        await engine.dispose()
        raise
    log.info("store %s open (schema revision %s), writer process %d",
             engine.url.render_as_string(hide_password=True), head_revision(),
             store.writer.proc.pid)
    try:
        yield store
    finally:
        await store.close()
        await engine.dispose()
