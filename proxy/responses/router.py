"""POST /v1/responses: parse, call the service, return JSON or SSE."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from proxy.chat.router import request_context
from proxy.chat.service import ChatService
from proxy.errors import InvalidRequest, validation_error
from proxy.responses.schemas import ResponsesRequest
from proxy.responses.service import ResponsesService

router = APIRouter()


def parse_request(raw: bytes) -> ResponsesRequest:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    try:
        return ResponsesRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid":
            raise InvalidRequest("The request body is not valid JSON: "
                                 f"{errors[0].get('msg')}") from None
        if errors and errors[0].get("type") == "model_type" and not errors[0].get("loc"):
            raise InvalidRequest("The request body must be a JSON object.") from None
        raise validation_error(list(errors)) from None


@router.post("/v1/responses")
@router.post("/{route_prefix:path}/v1/responses")  # base_url=http://gw/<prefix>/v1
async def create_response(request: Request):
    req = parse_request(await request.body())
    chat: ChatService = request.app.state.chat
    service = ResponsesService(chat)
    ctx = request_context(request.scope)
    if req.stream:
        plan = await service.stream(req, ctx)
        return StreamingResponse(plan.body, media_type="text/event-stream",
                                 headers={**plan.headers, "cache-control": "no-cache"})
    result = await service.create(req, ctx)
    return JSONResponse(result.body, headers=result.headers)
