"""Micro-batching for the in-process models (HALT, the embedding model): concurrent
callers share one forward pass, which runs in a worker thread.

    batcher = MicroBatcher(run_batch, max_batch=64)   # run_batch: list of items -> results
    result = await batcher.submit(item)
"""

from __future__ import annotations

import asyncio
import time


class MicroBatcher:
    """Groups concurrent ``submit`` calls into batches for ``run_batch`` (a blocking
    function of a list), which runs in a worker thread, one batch at a time.

    A quiet batcher never waits for companions: the first request starts at once. Under
    load (the previous request came less than ``quiet_gap_s`` ago) a batch waits
    ``gather_s`` for companions before it runs: a forward pass over 32 short answers costs
    about what 4 single ones do, and under load a request queues for longer than that
    anyway. Requests that arrive while a batch runs form the next one.
    When the batcher is quiet (nothing running, nothing pending, no request for
    ``quiet_gap_s``) a lone request that ``small`` accepts runs inline on the event loop: a
    thread hop costs about as much as a short answer's forward pass, and nothing else is
    waiting for the loop. ``small=None``: always a worker thread. ``run_inline`` (default
    ``run_batch``) is what such an inline run calls: a path tuned for one item, which
    may hold the GIL (a compiled loop over small arrays) where the worker thread's
    should release it."""

    def __init__(self, run_batch, max_batch: int, small=None, quiet_gap_s: float = 0.005,
                 gather_s: float = 0.001, run_inline=None):
        self.run_batch = run_batch
        self.run_inline = run_inline or run_batch
        self.max_batch = max_batch
        self.small = small
        self.quiet_gap_s = quiet_gap_s
        self.gather_s = gather_s
        self._busy = False  # the last request came within quiet_gap_s of the one before
        self._pending: list[tuple[object, asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None
        self._last_submit = float("-inf")
        self.batch_sizes: list[int] = []  # sizes of the batches run so far (for tests/metrics)
        self.inline_runs = 0  # lone requests run on the event loop

    async def submit(self, item):
        now = time.monotonic()
        quiet = now - self._last_submit > self.quiet_gap_s
        self._last_submit, self._busy = now, not quiet
        idle = not self._pending and (self._drainer is None or self._drainer.done())
        if quiet and idle and self.small is not None and self.small(item):
            self.inline_runs += 1
            return self.run_inline([item])[0]
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future))
        if self._drainer is None or self._drainer.done() or self._drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            if self._busy and len(self._pending) < self.max_batch:
                await asyncio.sleep(self.gather_s)
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not batch:
                continue
            if len(self.batch_sizes) < 10_000:
                self.batch_sizes.append(len(batch))
            try:
                results = await asyncio.to_thread(self.run_batch, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
