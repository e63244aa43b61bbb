"""The served OpenAPI spec, completed: the chat endpoint is a plain ASGI app in front of
FastAPI (proxy/chat/router.py), so FastAPI knows neither the path nor its request model.
This adds what spec-driven tools (schemathesis, client generators) need:

- ``POST /v1/chat/completions`` and ``POST /{route_prefix}/v1/chat/completions``;
- the chat request schema (:class:`ChatCompletionRequest` and its parts) as the body;
- the ``route_prefix`` path parameter of ``/{route_prefix}/v1/...`` and the
  ``x-hallgate-route`` header;
- every error response in the OpenAI shape (400, 401, 403, 404, 413, 429 with
  Retry-After, 502, 504), and the SSE content type of streaming answers.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI

from proxy.chat.schemas import ChatCompletionRequest

REF = "#/components/schemas/{name}"  # msgspec's ref_template
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]},
                       "code": {"type": ["string", "null"]}}}},
}
CHAT_ERRORS = {
    "400": "Invalid request: bad JSON, a bad field (named in `param`), an unknown route or "
           "a refused override; or the upstream's own 4xx",
    "401": "Missing or wrong gateway API key",
    "403": "The API key may not use the route it named",
    "404": "Unknown model",
    "413": "Request body over the gateway's limit",
    "429": "The gateway's in-flight limit, or the upstream's rate limit; see Retry-After",
    "502": "The upstream failed after retries or sent a malformed reply",
    "504": "The upstream did not answer within the deadline",
}
ROUTE_PREFIX = {
    "name": "route_prefix", "in": "path", "required": True, "schema": {"type": "string"},
    "description": "A route's path prefix from the policy (e.g. `strict` for "
                   "base_url http://gateway/strict/v1); an unknown prefix is a 400",
}
ROUTE_HEADER = {
    "name": "x-hallgate-route", "in": "header", "required": False,
    "schema": {"type": "string"},
    "description": "Select a route of the policy by name; an unknown value is a 400",
}


def _error(description: str, retry_after: bool = False) -> dict:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": ERROR_REF}}}
    if retry_after:
        out["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                          "description": "seconds to wait"}}
    return out


CHAT_PATHS = ("/v1/chat/completions", "/{route_prefix}/v1/chat/completions")


def _chat_operation(op: dict, prefixed: bool) -> None:
    op.setdefault("summary", "Create a chat completion (gated by the route's policy)")
    op.setdefault("operationId", "chat_completions_prefixed" if prefixed
                  else "chat_completions")
    op["parameters"] = ([ROUTE_PREFIX] if prefixed else []) + [ROUTE_HEADER]
    op["requestBody"] = {"required": True, "content": {"application/json": {
        "schema": {"$ref": REF.format(name="ChatCompletionRequest")}}}}
    op["responses"] = {
        "200": {"description": "A chat.completion (JSON), or chat.completion.chunk events "
                               "when `stream` is true; an abstention is a normal answer",
                "content": {"application/json": {"schema": {"type": "object"}},
                            "text/event-stream": {"schema": {"type": "string"}}}},
        **{code: _error(text, retry_after=code == "429") for code, text in CHAT_ERRORS.items()},
    }


def complete_spec(spec: dict) -> dict:
    """``spec`` (FastAPI's) with the chat body, parameters and error responses added."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    (_, ), parts = msgspec.json.schema_components([ChatCompletionRequest], ref_template=REF)
    schemas.update(parts)  # ChatCompletionRequest, ChatMessage, StreamOptions
    schemas["ErrorResponse"] = ERROR_SCHEMA
    paths = spec.setdefault("paths", {})
    for path in CHAT_PATHS:
        paths.setdefault(path, {}).setdefault("post", {})
    for path, item in paths.items():
        prefixed = "{route_prefix}" in path
        for method, op in item.items():
            if path.endswith("/chat/completions") and method == "post":
                _chat_operation(op, prefixed)
                continue
            if prefixed:
                op["parameters"] = [ROUTE_PREFIX]
            if path.endswith("/v1/models"):
                op["responses"]["401"] = _error(CHAT_ERRORS["401"])
    return spec


def install_openapi(app: FastAPI) -> None:
    """Serve the completed spec at /openapi.json (built once, on first request)."""
    default = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = complete_spec(default())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
