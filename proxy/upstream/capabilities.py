"""Upstreams that reject the ``logprobs`` parameter: detect it, retry without, remember.

OpenAI's reasoning models (o1, o3, o4-mini) answer 400 or 403 to ``logprobs``, and some
providers refuse it for some models. hallgate asks every upstream for logprobs, so such
a model would fail on every request. Per model, ``logprobs`` in the config says what to
do (:class:`proxy.config.UpstreamModel`):

    true    always ask; a rejection is the client's error (the upstream's 4xx)
    false   never ask: HALT reports "unavailable", EDFL samples its labels
    auto    ask; a 400/403 whose message names logprobs makes the gateway retry the same
            call without them and stop asking for that model (counted in
            ``hallgate_logprobs_rejected_total`` and logged once per model)

Without logprobs the gates do what the design says: HALT reports missing logprobs (the
profile's fail mode decides), EDFL falls back to sampled labels and the semantic gate
works as is. The ``black-box`` profile is built for such models.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry, Counter

from proxy.errors import UpstreamRejected
from proxy.upstream.base import Upstream
from proxy.upstream.wrapper import UpstreamWrapper

log = logging.getLogger("hallgate.upstream")

LOGPROB_FIELDS = ("logprobs", "top_logprobs")
REJECTION_STATUS = frozenset({400, 403})


def without_logprobs(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in LOGPROB_FIELDS}


def rejects_logprobs(exc: UpstreamRejected) -> bool:
    """A 400/403 that names the logprobs parameter (OpenAI: "Unsupported parameter:
    'logprobs' is not supported with this model.")."""
    text = f"{exc.message} {exc.param or ''}".lower()
    return exc.status in REJECTION_STATUS and "logprob" in text


def rejection_counter(registry: CollectorRegistry) -> Counter:
    return Counter("hallgate_logprobs_rejected", "Upstream calls retried without logprobs "
                   "because the model rejected them", ["model"], registry=registry)


class LogprobsCapability(UpstreamWrapper):
    """Wraps an Upstream; ``config.logprobs`` decides whether logprobs are asked for."""

    def __init__(self, inner: Upstream, rejected: Counter | None = None):
        super().__init__(inner)
        self.mode = inner.config.logprobs
        self.rejected = rejected
        self.rejects = self.mode is False  # True once the model is known to refuse them

    @property
    def logprobs_supported(self) -> bool:
        return self.inner.logprobs_supported and not self.rejects

    def _body(self, body: dict) -> dict:
        return without_logprobs(body) if self.rejects else body

    def _learn(self, exc: UpstreamRejected, body: dict) -> bool:
        """Whether to retry ``body`` without logprobs after ``exc``."""
        if self.mode != "auto" or not any(k in body for k in LOGPROB_FIELDS):
            return False
        if not rejects_logprobs(exc):
            return False
        if not self.rejects:
            log.warning("model %s rejects logprobs (%s); asking without them from now on",
                        self.config.name, exc.message)
        self.rejects = True
        if self.rejected is not None:
            self.rejected.labels(self.config.name).inc()
        return True

    async def complete(self, body: dict) -> dict:
        body = self._body(body)
        try:
            return await self.inner.complete(body)
        except UpstreamRejected as exc:
            if not self._learn(exc, body):
                raise
        return await self.inner.complete(without_logprobs(body))

    def stream(self, body: dict) -> AsyncIterator[dict]:
        body = self._body(body)
        if self.mode != "auto" or not any(k in body for k in LOGPROB_FIELDS):
            return self.inner.stream(body)  # nothing to learn: the inner stream as it is
        return self._learning_stream(body)

    async def _learning_stream(self, body: dict) -> AsyncIterator[dict]:
        """The stream, asked again without logprobs if its start rejects them."""
        chunks = self.inner.stream(body)
        try:
            try:
                first = await anext(chunks)
            except UpstreamRejected as exc:
                if not self._learn(exc, body):
                    raise
                await chunks.aclose()
                chunks = self.inner.stream(without_logprobs(body))
                first = await anext(chunks)
            yield first
            async for chunk in chunks:
                yield chunk
        except StopAsyncIteration:
            return
        finally:
            await chunks.aclose()
