"""The base of the upstream layers that wrap another one (capabilities, usage counting):
they forward what they do not change, so a layer states only what it adds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from proxy.upstream.base import Upstream


class UpstreamWrapper:
    """Forwards every part of the Upstream protocol to ``inner``."""

    def __init__(self, inner: Upstream):
        self.inner = inner
        self.config = inner.config

    @property
    def logprobs_supported(self) -> bool:
        return self.inner.logprobs_supported

    @property
    def on_retry(self) -> Callable[[], None] | None:
        return self.inner.on_retry

    @on_retry.setter
    def on_retry(self, value: Callable[[], None] | None) -> None:
        self.inner.on_retry = value

    async def complete(self, body: dict) -> dict:
        return await self.inner.complete(body)

    def stream(self, body: dict) -> AsyncIterator[dict]:
        return self.inner.stream(body)

    async def aclose(self) -> None:
        await self.inner.aclose()
