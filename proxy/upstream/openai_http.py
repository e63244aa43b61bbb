"""The lean path: OpenAI-compatible endpoints over the gateway's own HTTP/1.1 client.

OpenAI, vLLM, llama.cpp's server, Ollama's /v1 and the embedded model all speak this
protocol, so no provider translation is needed. The client is proxy/upstream/http1.py
(keep-alive pool, httptools parser) rather than aiohttp or httpx: this path is paid on
every request, and their per-request Python cost more than the rest of the gateway's
hop (bench/hop_floor.py measures the three). Bodies are encoded and decoded with orjson,
once each.

Like the openai SDK, the path follows a 307 or 308 to the same scheme (up to
``MAX_REDIRECTS`` times, dropping the Authorization header on a change of host); any other
redirect is a 502 naming the status and the Location. A body that is not what was asked
(an HTML page, a proxy's error page) is a 502 naming its content type and first bytes,
and a stream that goes silent for ``timeout_s`` mid-answer ends as a timeout naming the
seconds waited.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import orjson

from proxy.config import RetrySettings, UpstreamModel
from proxy.errors import UpstreamError, UpstreamRejected, UpstreamTimeout
from proxy.upstream.base import (
    RETRYABLE_STATUS,
    RetryableUpstreamError,
    call_with_retries,
    parse_retry_after,
)
from proxy.upstream.http1 import (
    Endpoint,
    HttpClient,
    HttpClientError,
    Response,
    Stream,
    proxy_for,
    tls_context,
)

JSON_HEADERS = {"Content-Type": "application/json"}
MAX_REDIRECTS = 5  # 307/308 hops followed per request
FOLLOWED_REDIRECTS = frozenset({307, 308})  # the method and body stay as they were
SHOWN_BYTES = 120  # of a body that is not what was asked, quoted in the error

log = logging.getLogger("hallgate.upstream")


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
        self._headers = {**JSON_HEADERS, **({"Authorization": f"Bearer {key}"} if key else {})}
        self._tls = model_tls_context(config)
        self.url = config.api_base.rstrip("/") + "/chat/completions"
        self.endpoint = self._endpoint(self.url)

    def _endpoint(self, url: str, headers: dict[str, str] | None = None) -> Endpoint:
        try:
            proxy = proxy_for(url, self.config.proxy)
        except ValueError as exc:  # e.g. ALL_PROXY=socks5://...
            raise ValueError(f"model {self.config.name!r}: {exc}; set the model's proxy: "
                             "(an http:// URL, or none) or NO_PROXY") from None
        return Endpoint.parse(url, self._headers if headers is None else headers,
                              proxy=proxy, tls=self._tls)

    def _redirected(self, endpoint: Endpoint, url: str, resp: Response | Stream,
                    hops: int) -> Endpoint:
        """The endpoint a 307/308 answer sends the request on to, or a 502 naming the
        redirect when it is not one to follow."""
        location = resp.headers.get("location", "")
        target = urljoin(url, location)
        reason = None
        if resp.status not in FOLLOWED_REDIRECTS:
            reason = "only 307 and 308 are followed (they keep the POST and its body)"
        elif not location:
            reason = "it has no Location"
        elif urlsplit(target).scheme != endpoint.scheme:
            reason = "it changes the scheme"
        elif hops >= MAX_REDIRECTS:
            reason = f"more than {MAX_REDIRECTS} redirects in a row"
        if reason is not None:
            raise UpstreamError(
                f"Upstream answered HTTP {resp.status} redirecting to {location or '(none)'}"
                f"; not followed: {reason}. Set api_base to the final URL.",
                code="upstream_redirect")
        headers = self._headers
        if urlsplit(target).netloc != urlsplit(url).netloc:  # no credentials to another host
            headers = {k: v for k, v in headers.items() if k != "Authorization"}
        return self._endpoint(target, headers)

    async def complete(self, body: dict) -> dict:
        payload = orjson.dumps({**body, "model": self.config.model, "stream": False})

        async def attempt(timeout: float) -> dict:
            endpoint, url, hops = self.endpoint, self.url, 0
            while True:
                resp = await _sent(self.client.post(endpoint, payload, timeout), timeout)
                if not 300 <= resp.status < 400:
                    break
                endpoint = self._redirected(endpoint, url, resp, hops)
                url, hops = urljoin(url, resp.headers["location"]), hops + 1
            raise_for_status(resp.status, resp.headers, resp.body)
            return parse_json(resp.body, resp.headers)

        return await call_with_retries(attempt, self.retry, self.config.timeout_s,
                                      self.on_retry)

    async def _open(self, payload: bytes, timeout: float) -> Stream:
        """The stream's response, after any 307/308; a failure status raises."""
        endpoint, url, hops = self.endpoint, self.url, 0
        while True:
            resp = await _sent(self.client.open(endpoint, payload, timeout), timeout)
            if resp.status < 300:
                return resp
            try:
                content = await resp.read(timeout)
            except (TimeoutError, HttpClientError):
                content = b""
            finally:
                resp.close()
            if resp.status >= 400:
                raise_for_status(resp.status, resp.headers, content)
            endpoint = self._redirected(endpoint, url, resp, hops)
            url, hops = urljoin(url, resp.headers["location"]), hops + 1

    async def stream(self, body: dict) -> AsyncIterator[dict]:
        payload = orjson.dumps({**body, "model": self.config.model, "stream": True})
        read_timeout = self.config.timeout_s

        # The timeout covers the connection and the headers, then each read; a long
        # answer may stream for longer than one attempt's timeout.
        resp = await call_with_retries(lambda timeout: self._open(payload, timeout),
                                       self.retry, self.config.timeout_s, self.on_retry)
        events = 0
        skipped = b""  # what came instead of events, for the error if none ever does
        try:
            async for line in resp.lines(read_timeout):
                if not line.startswith(b"data:"):
                    if not events and len(skipped) < SHOWN_BYTES:
                        skipped += line + b"\n"
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                events += 1
                yield parse_json(data, resp.headers)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"Upstream stream stalled: nothing arrived for "
                                  f"{read_timeout:g}s (timeout_s) after {events} event(s)",
                                  code="upstream_stream_timeout") from exc
        except HttpClientError as exc:
            raise UpstreamError(f"Upstream dropped the stream: {exc}",
                                code="upstream_stream_broken") from exc
        finally:
            resp.close()  # the connection is reused when the body ended, else hung up
        if not events and skipped.strip():
            raise UpstreamError("Upstream answered the stream with no events: "
                                + describe_body(skipped, resp.headers, whole=False),
                                code="upstream_bad_response")

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


def describe_body(content: bytes, headers, whole: bool = True) -> str:
    """The content type and the first bytes of a body (and its size when ``content`` is
    the whole body), for an error message."""
    kind = headers.get("content-type") or "no content type"
    shown = content[:SHOWN_BYTES].decode(errors="replace").strip()
    more = "..." if len(content) > SHOWN_BYTES else ""
    size = f", {len(content)} bytes" if whole else ""
    return f"{kind}{size}: {shown!r}{more}"


def parse_json(content: bytes, headers=None) -> dict:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("Upstream answered with a body that is not JSON: "
                            + describe_body(content, headers or {}),
                            code="upstream_bad_response") from exc
    if not isinstance(data, dict):
        raise UpstreamError("Upstream returned JSON that is not an object: "
                            + describe_body(content, headers or {}),
                            code="upstream_bad_response")
    return data


def model_tls_context(config: UpstreamModel):
    """The model's own TLS context when it sets ``ca_file``, a client certificate or
    ``verify: false``; None (the client's default) otherwise."""
    if not (config.ca_file or config.client_cert or not config.verify):
        return None
    if not config.verify:
        log.warning("TLS VERIFICATION IS OFF for model %r (verify: false): its upstream's "
                    "certificate is not checked, so anyone on the path can read and change "
                    "its traffic, API key included", config.name)
    try:
        return tls_context(config.ca_file, config.client_cert, config.client_key,
                           config.verify)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ValueError(f"model {config.name!r}: cannot load its TLS files "
                         f"(ca_file / client_cert / client_key): {exc}") from exc


T = TypeVar("T")


async def _sent(request: Awaitable[T], timeout: float) -> T:
    """The upstream's response to ``request`` (a POST or a stream's opening); a timeout or a
    connection failure is a retryable upstream error."""
    try:
        return await request
    except TimeoutError as exc:
        raise RetryableUpstreamError(f"upstream timed out after {timeout:g}s",
                                     timed_out=True) from exc
    except HttpClientError as exc:
        raise RetryableUpstreamError(f"connection error: {exc}") from exc
