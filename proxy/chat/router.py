"""POST /v1/chat/completions: parse, call the service, return JSON or SSE."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from proxy.chat.gating import RequestContext
from proxy.chat.schemas import ChatCompletionRequest
from proxy.chat.service import ChatService
from proxy.errors import InvalidRequest, validation_error

router = APIRouter()
OVERRIDE_PREFIX = "x-hallgate-"


def parse_request(raw: bytes) -> ChatCompletionRequest:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    try:
        return ChatCompletionRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid":
            raise InvalidRequest("The request body is not valid JSON: "
                                 f"{errors[0].get('msg')}") from None
        if errors and errors[0].get("type") == "model_type" and not errors[0].get("loc"):
            raise InvalidRequest("The request body must be a JSON object.") from None
        raise validation_error(list(errors)) from None


def request_context(request: Request) -> RequestContext:
    headers = request.headers
    return RequestContext(
        path=request.url.path,
        request_id=request.state.request_id,
        route_header=headers.get("x-hallgate-route"),
        key_name=getattr(request.state, "key_name", None),
        override_headers={k: v for k, v in headers.items()
                          if k.startswith(OVERRIDE_PREFIX) and k != "x-hallgate-route"},
    )


@router.post("/v1/chat/completions")
@router.post("/{route_prefix:path}/v1/chat/completions")  # base_url=http://gw/<prefix>/v1
async def chat_completions(request: Request):
    chat_request = parse_request(await request.body())
    service: ChatService = request.app.state.chat
    ctx = request_context(request)
    if chat_request.stream:
        plan = await service.open_stream(chat_request, ctx)
        return StreamingResponse(plan.body, media_type="text/event-stream",
                                 headers={**plan.headers, "cache-control": "no-cache"})
    result = await service.complete(chat_request, ctx)
    return JSONResponse(result.body, headers=result.headers)
