"""The lean path: OpenAI-compatible endpoints over one shared ``aiohttp.ClientSession``.

OpenAI, vLLM, llama.cpp's server, Ollama's /v1 and the embedded model all speak this
protocol, so no provider translation is needed. aiohttp rather than httpx: under
concurrency httpx's AsyncClient costs several times the CPU per request (encode/httpx
#3215; bench/overhead.py measured both here), and this path is paid on every request.
Bodies are encoded and decoded with orjson, once each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson

from proxy.config import RetrySettings, UpstreamModel
from proxy.errors import UpstreamError, UpstreamRejected
from proxy.upstream.base import (
    RETRYABLE_STATUS,
    RetryableUpstreamError,
    call_with_retries,
    parse_retry_after,
)

JSON_HEADERS = {"Content-Type": "application/json"}


def http_session() -> aiohttp.ClientSession:
    """The one upstream connection pool of a process (closed by its owner)."""
    connector = aiohttp.TCPConnector(limit=1024, limit_per_host=0, ttl_dns_cache=300,
                                     keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))


class OpenAIHttpUpstream:
    logprobs_supported = True

    def __init__(self, config: UpstreamModel, retry: RetrySettings,
                 session: aiohttp.ClientSession):
        if not config.api_base:
            raise ValueError(f"model {config.name!r}: provider 'openai' needs api_base")
        self.config = config
        self.retry = (retry if config.deadline_s is None
                      else retry.model_copy(update={"deadline_s": config.deadline_s}))
        self.on_retry: Callable[[], None] | None = None
        self.session = session
        self.url = config.api_base.rstrip("/") + "/chat/completions"
        key = config.api_key()
        self.headers = {**JSON_HEADERS, **({"Authorization": f"Bearer {key}"} if key else {})}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        """The attempt's timeout; the usual one is built once, not per call."""
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=seconds)
            if len(self._timeouts) < 8:
                self._timeouts[seconds] = timeout
        return timeout

    async def complete(self, body: dict) -> dict:
        payload = orjson.dumps({**body, "model": self.config.model, "stream": False})

        async def attempt(timeout: float) -> dict:
            try:
                async with self.session.post(self.url, data=payload, headers=self.headers,
                                             timeout=self._timeout(timeout)) as resp:
                    content = await resp.read()
            except asyncio.TimeoutError as exc:
                raise RetryableUpstreamError("upstream timed out", timed_out=True) from exc
            except aiohttp.ClientError as exc:
                raise RetryableUpstreamError(f"connection error: {exc!r}") from exc
            raise_for_status(resp.status, resp.headers, content)
            return parse_json(content)

        return await call_with_retries(attempt, self.retry, self.config.timeout_s,
                                      self.on_retry)

    async def stream(self, body: dict) -> AsyncIterator[dict]:
        payload = orjson.dumps({**body, "model": self.config.model, "stream": True})

        async def attempt(timeout: float) -> aiohttp.ClientResponse:
            # The timeout covers the connection and the first byte; a long answer may
            # stream for longer than one attempt's timeout.
            timeout_cfg = aiohttp.ClientTimeout(total=None, connect=timeout,
                                                sock_read=timeout)
            try:
                resp = await self.session.post(self.url, data=payload, headers=self.headers,
                                               timeout=timeout_cfg)
            except asyncio.TimeoutError as exc:
                raise RetryableUpstreamError("upstream timed out", timed_out=True) from exc
            except aiohttp.ClientError as exc:
                raise RetryableUpstreamError(f"connection error: {exc!r}") from exc
            if resp.status >= 400:
                content = await resp.read()
                resp.release()
                raise_for_status(resp.status, resp.headers, content)
            return resp

        resp = await call_with_retries(attempt, self.retry, self.config.timeout_s,
                                      self.on_retry)
        try:
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                yield parse_json(data)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise UpstreamError(f"Upstream dropped the stream: {exc!r}",
                                code="upstream_stream_broken") from exc
        finally:
            resp.close()  # closing (not releasing) tells a generating upstream to stop

    async def aclose(self) -> None:  # the shared session is closed by its owner
        return None


def raise_for_status(status: int, headers, content: bytes) -> None:
    if status < 400:
        return
    message = _error_message(content) or f"HTTP {status}"
    if status in RETRYABLE_STATUS:
        raise RetryableUpstreamError(f"HTTP {status}: {message}", status=status,
                                     retry_after=parse_retry_after(headers.get("retry-after")))
    raise UpstreamRejected(f"Upstream rejected the request: {message}", status=status,
                           code=f"upstream_{status}")


def _error_message(content: bytes) -> str | None:
    try:
        err = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return content[:200].decode(errors="replace") or None
    if isinstance(err, dict):
        return err.get("message")
    return str(err) if err else None


def parse_json(content: bytes) -> dict:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("Upstream returned malformed JSON",
                            code="upstream_bad_response") from exc
    if not isinstance(data, dict):
        raise UpstreamError("Upstream returned JSON that is not an object",
                            code="upstream_bad_response")
    return data
