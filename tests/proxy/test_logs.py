"""Structured JSON logs carry the id of the request being served."""

from __future__ import annotations

import json
import logging

import httpx

from proxy.logs import JsonFormatter, request_id_var
from proxy.middleware import RequestIdMiddleware


def test_json_line_with_request_id():
    record = logging.LogRecord("hallgate.chat", logging.WARNING, __file__, 1,
                               "upstream said %s", ("no",), None)
    token = request_id_var.set("req-42")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["request_id"] == "req-42" and entry["message"] == "upstream said no"
    assert entry["level"] == "warning" and entry["logger"] == "hallgate.chat"
    assert "request_id" not in json.loads(JsonFormatter().format(record))


async def test_request_id_is_visible_to_code_serving_the_request():
    seen = {}

    async def app(scope, receive, send):
        seen["id"] = request_id_var.get()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=RequestIdMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        resp = await client.get("/", headers={"x-request-id": "abc"})
    assert seen["id"] == "abc" and resp.headers["x-request-id"] == "abc"
    assert request_id_var.get() is None
