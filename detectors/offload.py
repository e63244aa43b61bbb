"""CPU-bound detector work off the event loop, a bounded number at a time.

Skeleton masking, clustering and feature code is plain Python: run on the event loop, a
big prompt would stall every other request (and the liveness probe) for seconds. Gates
hand such work to a :class:`CpuLimiter`, which runs it in a worker thread
(``asyncio.to_thread``) with at most ``limit`` of them at once; further work waits its
turn without holding the loop.

    cpu = CpuLimiter(limit=2)
    skeletons = await cpu.run(build_skeletons, messages, config)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class CpuLimiter:
    def __init__(self, limit: int = 2):
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit  # worker threads busy with detector work at once
        self._semaphore: asyncio.Semaphore | None = None

    async def run(self, fn: Callable[..., T], /, *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` in a worker thread, once a slot is free."""
        if self._semaphore is None:  # created lazily: bound to the loop that first uses it
            self._semaphore = asyncio.Semaphore(self.limit)
        async with self._semaphore:
            return await asyncio.to_thread(fn, *args, **kwargs)
