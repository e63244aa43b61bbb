"""POST [/<route prefix>]/v1/chat/completions: parse, call the service, return JSON or SSE.

This is the one endpoint every request pays for, so it is a plain ASGI app rather than a
FastAPI route: FastAPI's request objects, dependency solving, response classes and
built-in middleware cost more than the rest of the gateway's own work
(bench/overhead.py). ``proxy.app.HallgateApp`` sends chat completions to it through the
gateway's own middleware chain (request id, metrics, API keys, body limit); every other
path goes to FastAPI. The body is decoded once (orjson), validated once (msgspec) and
the same dict becomes the upstream body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import orjson

from proxy.audit import audit_failure
from proxy.chat.gate_session import RequestContext
from proxy.chat.schemas import ChatCompletionRequest
from proxy.chat.service import ChatService
from proxy.chat.shaping import DONE_EVENT, sse
from proxy.errors import HallgateError, InvalidRequest, mid_stream_error

log = logging.getLogger("hallgate.chat")
CHAT_PATH_SUFFIX = "/v1/chat/completions"
OVERRIDE_PREFIX = "x-hallgate-"
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"),
               (b"cache-control", b"no-cache")]


def parse_request(raw: bytes) -> ChatCompletionRequest:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return ChatCompletionRequest.parse(data)


def request_context(scope: dict) -> RequestContext:
    route_header = None
    overrides = {}
    for key, value in scope["headers"]:
        if key.startswith(b"x-hallgate-"):
            name = key.decode("latin-1")
            if name == "x-hallgate-route":
                route_header = value.decode("latin-1")
            else:
                overrides[name] = value.decode("latin-1")
    state = scope.get("state") or {}
    return RequestContext(path=scope["path"], request_id=state.get("request_id", ""),
                          route_header=route_header, key_name=state.get("key_name"),
                          override_headers=overrides)


async def read_body(receive) -> bytes | None:
    """The request body; None when the client left before sending all of it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_json(send, status: int, body: dict, headers: dict[str, str] | None = None,
                    ) -> None:
    payload = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(payload)).encode()),
                            *_header_list(headers or {})]})
    await send({"type": "http.response.body", "body": payload})


async def send_stream(send, receive, headers: dict[str, str],
                      body: AsyncIterator[bytes]) -> None:
    """SSE until the body ends or the client leaves; either way the body is closed, which
    closes the upstream stream. The head waits for the first chunk, so that both leave in
    one write (proxy/server.py)."""
    start = {"type": "http.response.start", "status": 200,
             "headers": [*SSE_HEADERS, *_header_list(headers)]}
    started = False
    gone: asyncio.Future | None = None  # watches for the client leaving
    try:
        async for chunk in body:
            if not started:  # the head goes with the first chunk, in the same write
                await send(start)
                started = True
            elif gone is None:  # watched from the second chunk on: the first goes at once
                gone = asyncio.ensure_future(_disconnected(receive))
            elif gone.done():
                return
            last = chunk.endswith(DONE_EVENT)  # the stream's end goes out in the same write
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if last:
                return
        if not started:
            await send(start)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except Exception as exc:  # the status is sent (or goes now): the stream ends with an
        with contextlib.suppress(Exception):  # error event
            if not started:
                await send(start)
            await send({"type": "http.response.body", "body": sse(mid_stream_error(exc)),
                        "more_body": False})
    finally:
        if gone is not None:
            gone.cancel()
        with contextlib.suppress(Exception):
            await body.aclose()  # type: ignore[attr-defined]


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class ChatEndpoint:
    """The chat-completions endpoint as an ASGI app; the service lives on the app state."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            raw = await read_body(receive)
            if raw is None:
                return
            request = parse_request(raw)
            service: ChatService = scope["app"].state.chat
            ctx = request_context(scope)
            if request.stream:
                plan = await service.open_stream(request, ctx)
            else:
                result = await service.complete(request, ctx)
        except HallgateError as exc:
            audit_failure(exc.status, exc.type, exc.code, exc.message)
            await send_json(send, exc.status, exc.to_body(), getattr(exc, "headers", None))
            return
        except Exception as exc:  # a bug of ours: logged, and still an OpenAI-shaped 500
            log.exception("chat request failed")
            audit_failure(500, "server_error", None, repr(exc))
            error = HallgateError("The gateway hit an internal error; see its logs.")
            await send_json(send, error.status, error.to_body())
            return
        if request.stream:  # the status is sent: from here on errors end the stream
            await send_stream(send, receive, plan.headers, plan.body)
        else:
            await send_json(send, 200, result.body, result.headers)
