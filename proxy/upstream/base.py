"""The Upstream protocol and the shared retry loop (tenacity)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from proxy.config import RetrySettings, UpstreamModel
from proxy.errors import UpstreamError, UpstreamRateLimited, UpstreamTimeout

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class Upstream(Protocol):
    config: UpstreamModel
    logprobs_supported: bool
    on_retry: Callable[[], None] | None  # called before each retry (metrics)

    async def complete(self, body: dict) -> dict:
        """One non-streaming chat completion; ``body`` is an OpenAI request dict."""

    def stream(self, body: dict) -> AsyncIterator[dict]:
        """Chat completion chunks as dicts; retries happen only before the first chunk."""

    async def aclose(self) -> None: ...


class RetryableUpstreamError(Exception):
    """A failure worth another attempt: 408/429/5xx, a timeout, a dropped connection."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None, timed_out: bool = False):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.timed_out = timed_out


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form; dates are ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class _WaitRetryAfter:
    """Exponential backoff with jitter, replaced by the server's Retry-After when given.

    Retry-After is honoured in full, even above the backoff cap; when it does not fit in
    what is left of the deadline, ``stop_before_delay`` gives up at once (no useless
    early retry) and the client gets the upstream's 429 with its Retry-After.
    """

    def __init__(self, settings: RetrySettings):
        self.backoff = wait_exponential_jitter(
            initial=settings.backoff_initial_s, max=settings.backoff_max_s
        )

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableUpstreamError) and exc.retry_after is not None:
            return exc.retry_after
        return self.backoff(state)


async def call_with_retries(attempt: Callable[[float], Awaitable[T]],
                            settings: RetrySettings, per_attempt_timeout: float,
                            on_retry: Callable[[], None] | None = None) -> T:
    """Run ``attempt(timeout)`` until it succeeds, attempts run out or the deadline passes.

    ``attempt`` must enforce ``timeout`` itself (the transports hand it to their client).
    The first attempt runs bare: the retry machinery (tenacity, a timeout task) is only
    built once it has failed, so a healthy upstream costs no more than the call.
    Gives up with :class:`UpstreamTimeout` (504) when the deadline is what ran out or the
    last failure was a timeout, else with :class:`UpstreamError` (502).
    """
    start = time.monotonic()
    try:
        return await attempt(min(per_attempt_timeout, settings.deadline_s))
    except RetryableUpstreamError as exc:
        if settings.max_attempts <= 1:
            raise _give_up(exc, 1, start, settings) from exc
        first_failure = exc
    return await _retry(attempt, settings, per_attempt_timeout, on_retry, start, first_failure)


async def _retry(attempt: Callable[[float], Awaitable[T]], settings: RetrySettings,
                 per_attempt_timeout: float, on_retry: Callable[[], None] | None,
                 start: float, first_failure: RetryableUpstreamError) -> T:
    """Attempts 2..max_attempts, with backoff (tenacity), under the total deadline.

    tenacity's first attempt re-raises ``first_failure``, so it counts that attempt and
    waits its backoff (or the upstream's Retry-After) before the next real one."""
    pending = [first_failure]
    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.max_attempts)
        | stop_before_delay(settings.deadline_s - (time.monotonic() - start)),
        wait=_WaitRetryAfter(settings),
        retry=retry_if_exception_type(RetryableUpstreamError),
        before_sleep=(lambda _: on_retry()) if on_retry else None,
        reraise=True,
    )
    try:
        async for try_ in retrying:
            with try_:
                if pending:
                    raise pending.pop()
                remaining = settings.deadline_s - (time.monotonic() - start)
                if remaining <= 0:
                    raise RetryableUpstreamError("deadline passed", timed_out=True)
                timeout = min(per_attempt_timeout, remaining)
                try:
                    return await asyncio.wait_for(attempt(timeout), timeout + 1.0)
                except TimeoutError as exc:
                    raise RetryableUpstreamError("upstream timed out", timed_out=True) from exc
    except RetryableUpstreamError as exc:
        attempts = retrying.statistics.get("attempt_number", 1)
        raise _give_up(exc, attempts, start, settings) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _give_up(exc: RetryableUpstreamError, attempts: int, start: float,
             settings: RetrySettings) -> UpstreamError:
    elapsed = time.monotonic() - start
    detail = f"{exc} (after {attempts} attempt(s), {elapsed:.1f}s)"
    if exc.status == 429 and not exc.timed_out:
        return UpstreamRateLimited(f"Upstream is rate-limiting: {detail}",
                                   retry_after=exc.retry_after)
    if exc.timed_out or elapsed >= settings.deadline_s:
        return UpstreamTimeout(f"Upstream did not answer in time: {detail}")
    return UpstreamError(f"Upstream failed: {detail}", code=_code(exc))


def _code(exc: RetryableUpstreamError) -> str | None:
    return f"upstream_{exc.status}" if exc.status else "upstream_unreachable"
