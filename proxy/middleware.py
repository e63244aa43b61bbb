"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request).

- request ids: ``x-request-id`` taken from the client (printable ASCII, at most 128
  characters; anything else, such as bytes 0xFF 0xFE, is replaced) or made up, echoed on
  the response;
- body limit: a body over ``max_body_bytes`` is a 413 in the OpenAI error shape.
"""

from __future__ import annotations

import json
import random

from proxy.errors import PayloadTooLarge
from proxy.logs import request_id_var

Scope = dict


def header_value(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case bytes, as ASGI servers give them)."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def client_request_id(raw: bytes | None) -> str:
    """The client's id when it is printable ASCII (cut to 128 characters), else a new one:
    header bytes are not guaranteed to be text, and the id goes into logs and headers."""
    text = raw[:128].decode("ascii", errors="replace") if raw else ""
    if text and text.isprintable() and "\ufffd" not in text:
        return text
    # 128 random bits as 32 hex digits, like uuid4().hex, without a getrandom() system
    # call per request: an id must be unique, not unguessable
    return f"{random.getrandbits(128):032x}"


class RequestIdMiddleware:
    def __init__(self, app, header: bytes = b"x-request-id"):
        self.app = app
        self.header = header

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = client_request_id(header_value(scope, self.header))
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((self.header, request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = header_value(scope, b"content-length")
        if length is not None and length.isdigit():
            if int(length) > self.max_bytes:
                return await self._reject(send)
            # the server's parser delimits the body by Content-Length: nothing to count
            return await self.app(scope, receive, send)
        seen = 0

        async def counting_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(self._message())
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"The request body is larger than this gateway's limit of {self.max_bytes} bytes."

    async def _reject(self, send) -> None:
        body = json.dumps(PayloadTooLarge(self._message()).to_body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
