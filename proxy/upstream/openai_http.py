"""The lean path: OpenAI-compatible endpoints over the gateway's own HTTP/1.1 client.

OpenAI, vLLM, llama.cpp's server, Ollama's /v1 and the embedded model all speak this
protocol, so no provider translation is needed. The client is proxy/upstream/http1.py
(keep-alive pool, httptools parser) rather than aiohttp or httpx: this path is paid on
every request, and their per-request Python cost more than the rest of the gateway's
hop (bench/hop_floor.py measures the three). Bodies are encoded and decoded with orjson,
once each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import orjson

from proxy.config import RetrySettings, UpstreamModel
from proxy.errors import UpstreamError, UpstreamRejected
from proxy.upstream.base import (
    RETRYABLE_STATUS,
    RetryableUpstreamError,
    call_with_retries,
    parse_retry_after,
)
from proxy.upstream.http1 import Endpoint, HttpClient, HttpClientError

JSON_HEADERS = {"Content-Type": "application/json"}


class OpenAIHttpUpstream:
    logprobs_supported = True

    def __init__(self, config: UpstreamModel, retry: RetrySettings, client: HttpClient):
        if not config.api_base:
            raise ValueError(f"model {config.name!r}: provider 'openai' needs api_base")
        self.config = config
        self.retry = (retry if config.deadline_s is None
                      else retry.model_copy(update={"deadline_s": config.deadline_s}))
        self.on_retry: Callable[[], None] | None = None
        self.client = client
        key = config.api_key()
        headers = {**JSON_HEADERS, **({"Authorization": f"Bearer {key}"} if key else {})}
        self.endpoint = Endpoint.parse(config.api_base.rstrip("/") + "/chat/completions",
                                       headers)

    async def complete(self, body: dict) -> dict:
        payload = orjson.dumps({**body, "model": self.config.model, "stream": False})

        async def attempt(timeout: float) -> dict:
            try:
                resp = await self.client.post(self.endpoint, payload, timeout)
            except TimeoutError as exc:
                raise RetryableUpstreamError("upstream timed out", timed_out=True) from exc
            except HttpClientError as exc:
                raise RetryableUpstreamError(f"connection error: {exc}") from exc
            raise_for_status(resp.status, resp.headers, resp.body)
            return parse_json(resp.body)

        return await call_with_retries(attempt, self.retry, self.config.timeout_s,
                                      self.on_retry)

    async def stream(self, body: dict) -> AsyncIterator[dict]:
        payload = orjson.dumps({**body, "model": self.config.model, "stream": True})
        read_timeout = self.config.timeout_s

        async def attempt(timeout: float):
            # The timeout covers the connection and the headers, then each read; a long
            # answer may stream for longer than one attempt's timeout.
            try:
                resp = await self.client.open(self.endpoint, payload, timeout)
            except TimeoutError as exc:
                raise RetryableUpstreamError("upstream timed out", timed_out=True) from exc
            except HttpClientError as exc:
                raise RetryableUpstreamError(f"connection error: {exc}") from exc
            if resp.status >= 400:
                try:
                    content = await resp.read(timeout)
                except (TimeoutError, HttpClientError):
                    content = b""
                finally:
                    resp.close()
                raise_for_status(resp.status, resp.headers, content)
            return resp

        resp = await call_with_retries(attempt, self.retry, self.config.timeout_s,
                                      self.on_retry)
        try:
            async for line in resp.lines(read_timeout):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                yield parse_json(data)
        except (HttpClientError, TimeoutError) as exc:
            raise UpstreamError(f"Upstream dropped the stream: {exc!r}",
                                code="upstream_stream_broken") from exc
        finally:
            resp.close()  # the connection is reused when the body ended, else hung up

    async def aclose(self) -> None:  # the shared client is closed by its owner
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
