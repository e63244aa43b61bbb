"""The lean path: OpenAI-compatible endpoints over one shared ``httpx.AsyncClient``.

OpenAI, vLLM, llama.cpp's server, Ollama's /v1 and the embedded model all speak this
protocol, so no provider translation is needed and the per-call overhead stays small.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx

from proxy.config import RetrySettings, UpstreamModel
from proxy.errors import UpstreamError, UpstreamRejected
from proxy.upstream.base import (
    RETRYABLE_STATUS,
    RetryableUpstreamError,
    call_with_retries,
    parse_retry_after,
)


class OpenAIHttpUpstream:
    logprobs_supported = True

    def __init__(self, config: UpstreamModel, retry: RetrySettings, client: httpx.AsyncClient):
        if not config.api_base:
            raise ValueError(f"model {config.name!r}: provider 'openai' needs api_base")
        self.config = config
        self.retry = (retry if config.deadline_s is None
                      else retry.model_copy(update={"deadline_s": config.deadline_s}))
        self.on_retry: Callable[[], None] | None = None
        self.client = client
        self.url = config.api_base.rstrip("/") + "/chat/completions"
        key = config.api_key()
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def complete(self, body: dict) -> dict:
        body = {**body, "model": self.config.model, "stream": False}

        async def attempt(timeout: float) -> dict:
            try:
                resp = await self.client.post(self.url, json=body, headers=self.headers,
                                              timeout=timeout)
            except httpx.TimeoutException as exc:
                raise RetryableUpstreamError(f"timeout: {exc!r}", timed_out=True) from exc
            except httpx.TransportError as exc:
                raise RetryableUpstreamError(f"connection error: {exc!r}") from exc
            _raise_for_status(resp.status_code, resp.headers, resp.content)
            return _parse_json(resp.content)

        return await call_with_retries(attempt, self.retry, self.config.timeout_s,
                                      self.on_retry)

    async def stream(self, body: dict) -> AsyncIterator[dict]:
        body = {**body, "model": self.config.model, "stream": True}

        async def attempt(timeout: float) -> httpx.Response:
            request = self.client.build_request("POST", self.url, json=body,
                                                headers=self.headers, timeout=timeout)
            try:
                resp = await self.client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise RetryableUpstreamError(f"timeout: {exc!r}", timed_out=True) from exc
            except httpx.TransportError as exc:
                raise RetryableUpstreamError(f"connection error: {exc!r}") from exc
            if resp.status_code >= 400:
                content = await resp.aread()
                await resp.aclose()
                _raise_for_status(resp.status_code, resp.headers, content)
            return resp

        resp = await call_with_retries(attempt, self.retry, self.config.timeout_s,
                                      self.on_retry)
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield _parse_json(data.encode())
        except httpx.HTTPError as exc:
            raise UpstreamError(f"Upstream dropped the stream: {exc!r}",
                                code="upstream_stream_broken") from exc
        finally:
            await resp.aclose()

    async def aclose(self) -> None:  # the shared client is closed by its owner
        return None


def _raise_for_status(status: int, headers: httpx.Headers, content: bytes) -> None:
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
        err = json.loads(content).get("error")
    except (ValueError, AttributeError):
        return content[:200].decode(errors="replace") or None
    if isinstance(err, dict):
        return err.get("message")
    return str(err) if err else None


def _parse_json(content: bytes) -> dict:
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise UpstreamError("Upstream returned malformed JSON",
                            code="upstream_bad_response") from exc
    if not isinstance(data, dict):
        raise UpstreamError("Upstream returned JSON that is not an object",
                            code="upstream_bad_response")
    return data
