"""The any-provider path through ``litellm.acompletion``.

This is the only module that imports litellm. Its own retries are off (our retry loop
in :mod:`proxy.upstream.base` is the one that runs), and its exceptions are turned into
ours here. Where litellm says a provider has no logprobs, the parameters are not sent and
``logprobs_supported`` is False, so the detectors report the missing logprobs instead of
the call failing or the parameter vanishing silently.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

from proxy.config import RetrySettings, UpstreamModel
from proxy.errors import UpstreamError, UpstreamRejected, UpstreamTimeout
from proxy.upstream.base import (
    RETRYABLE_STATUS,
    RetryableUpstreamError,
    call_with_retries,
    parse_retry_after,
)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map
import litellm  # noqa: E402

litellm.suppress_debug_info = True


class LiteLLMUpstream:
    def __init__(self, config: UpstreamModel, retry: RetrySettings):
        self.config = config
        self.retry = (retry if config.deadline_s is None
                      else retry.model_copy(update={"deadline_s": config.deadline_s}))
        self.on_retry: Callable[[], None] | None = None
        try:
            supported = litellm.get_supported_openai_params(model=config.model) or []
        except Exception:  # unknown provider/model: assume OpenAI-like
            supported = ["logprobs", "top_logprobs"]
        self.logprobs_supported = "logprobs" in supported

    def _kwargs(self, body: dict, timeout: float, stream: bool) -> dict:
        kwargs = {**body, "model": self.config.model, "stream": stream,
                  "timeout": timeout, "num_retries": 0, "max_retries": 0}
        if self.config.api_base:
            kwargs["api_base"] = self.config.api_base
        if key := self.config.api_key():
            kwargs["api_key"] = key
        if not self.logprobs_supported:
            kwargs.pop("logprobs", None)
            kwargs.pop("top_logprobs", None)
        return kwargs

    async def complete(self, body: dict) -> dict:
        async def attempt(timeout: float) -> dict:
            try:
                resp = await litellm.acompletion(**self._kwargs(body, timeout, stream=False))
            except Exception as exc:
                raise _map_exception(exc) from exc
            return resp.model_dump(exclude_none=True)

        return await call_with_retries(attempt, self.retry, self.config.timeout_s,
                                      self.on_retry)

    async def stream(self, body: dict) -> AsyncIterator[dict]:
        async def attempt(timeout: float):
            try:
                return await litellm.acompletion(**self._kwargs(body, timeout, stream=True))
            except Exception as exc:
                raise _map_exception(exc) from exc

        chunks = await call_with_retries(attempt, self.retry, self.config.timeout_s,
                                      self.on_retry)
        events = 0
        try:
            async for chunk in chunks:
                events += 1
                yield chunk.model_dump(exclude_none=True)
        except litellm.exceptions.Timeout as exc:
            raise UpstreamTimeout(f"Upstream stream stalled: nothing arrived for "
                                  f"{self.config.timeout_s:g}s (timeout_s) after {events} "
                                  "event(s)", code="upstream_stream_timeout") from exc
        except Exception as exc:
            raise UpstreamError(f"Upstream dropped the stream: {exc!r}",
                                code="upstream_stream_broken") from exc

    async def aclose(self) -> None:
        return None


def _map_exception(exc: Exception) -> Exception:
    """litellm's exception classes -> our retryable error or a final one."""
    if isinstance(exc, litellm.exceptions.Timeout):
        return RetryableUpstreamError(f"timeout: {exc}", timed_out=True)
    if isinstance(exc, litellm.exceptions.APIConnectionError):
        return RetryableUpstreamError(f"connection error: {exc}")
    status = getattr(exc, "status_code", None)
    if status in RETRYABLE_STATUS:
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        return RetryableUpstreamError(f"HTTP {status}: {exc}", status=status,
                                      retry_after=parse_retry_after(header))
    if isinstance(status, int) and 400 <= status < 500:
        return UpstreamRejected(f"Upstream rejected the request: {exc}", status=status,
                                code=f"upstream_{status}")
    return UpstreamError(f"Upstream failed: {exc}", code="upstream_error")
