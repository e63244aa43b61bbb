"""An Upstream wrapper that records latency, retries, failures and tokens in Metrics."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from proxy.errors import HallgateError
from proxy.metrics import Metrics
from proxy.upstream.base import Upstream


class InstrumentedUpstream:
    def __init__(self, inner: Upstream, metrics: Metrics):
        self.inner = inner
        self.config = inner.config
        self.model = model = inner.config.name
        inner.on_retry = metrics.upstream_retries.labels(model).inc
        self.on_retry = inner.on_retry
        # label lookups once, not per call
        self._seconds = metrics.upstream_seconds.labels(model)
        self._errors = metrics.upstream_errors.labels(model)
        self._tokens = {kind: metrics.tokens.labels(model, kind[:-7])
                        for kind in ("prompt_tokens", "completion_tokens")}

    def _count_tokens(self, usage: dict | None) -> None:
        if usage:
            for kind, counter in self._tokens.items():
                counter.inc(int(usage.get(kind) or 0))

    @property
    def logprobs_supported(self) -> bool:
        """The inner upstream's, asked each time: it can learn that a model refuses them."""
        return self.inner.logprobs_supported

    async def complete(self, body: dict) -> dict:
        start = time.perf_counter()
        try:
            resp = await self.inner.complete(body)
        except HallgateError:
            self._errors.inc()
            raise
        finally:
            self._seconds.observe(time.perf_counter() - start)
        self._count_tokens(resp.get("usage"))
        return resp

    async def stream(self, body: dict) -> AsyncIterator[dict]:
        start = time.perf_counter()
        try:
            async with contextlib.aclosing(self.inner.stream(body)) as stream:
                async for chunk in stream:
                    if chunk.get("usage"):
                        self._count_tokens(chunk["usage"])
                    yield chunk
        except HallgateError:
            self._errors.inc()
            raise
        finally:
            self._seconds.observe(time.perf_counter() - start)

    async def aclose(self) -> None:
        await self.inner.aclose()
