"""An Upstream wrapper that records latency, retries, failures and tokens in Metrics, and
logs each failed call once (after its retries) with the request id (proxy/logs.py), the
model, the upstream host and what went wrong."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from proxy.errors import HallgateError, UpstreamRejected
from proxy.metrics import Metrics
from proxy.upstream.base import Upstream

log = logging.getLogger("hallgate.upstream")


def upstream_host(api_base: str | None, model: str) -> str:
    """host:port of ``api_base`` (credentials never shown), else the litellm provider."""
    if api_base:
        parts = urlsplit(api_base)
        return parts.netloc.rsplit("@", 1)[-1] or api_base
    return model.split("/", 1)[0] if "/" in model else "provider default"


def log_failure(exc: HallgateError, model: str, host: str, stream: bool) -> None:
    """One line per failed upstream call. An upstream's own 4xx is logged at info and
    without its message (upstreams echo the request); the gateway's description of any
    other failure (timeout, redirect, non-JSON body, TLS or connection error) is kept."""
    kind = "stream" if stream else "call"
    exc.logged = True
    if isinstance(exc, UpstreamRejected):
        log.info("upstream %s failed: model=%s upstream=%s status=%s code=%s: the upstream "
                 "rejected the request", kind, model, host, exc.status, exc.code)
        return
    log.warning("upstream %s failed: model=%s upstream=%s status=%s code=%s: %s",
                kind, model, host, exc.status, exc.code, exc.message)


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
        self.host = upstream_host(inner.config.api_base, inner.config.model)

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
        except HallgateError as exc:
            self._errors.inc()
            log_failure(exc, self.model, self.host, stream=False)
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
        except HallgateError as exc:
            self._errors.inc()
            log_failure(exc, self.model, self.host, stream=True)
            raise
        finally:
            self._seconds.observe(time.perf_counter() - start)

    async def aclose(self) -> None:
        await self.inner.aclose()
