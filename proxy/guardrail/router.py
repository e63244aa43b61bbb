"""POST /beta/litellm_basic_guardrail_api: LiteLLM's Generic Guardrail API endpoint.

The route comes from, in order: ``route`` in the guardrail's
``additional_provider_specific_params`` (or a request's dynamic ``extra_body``), the
``x-hallgate-route`` header of this call, the same header of the client's request when
LiteLLM forwards its value (``extra_headers: [x-hallgate-route]`` in the guardrail
config), and a path prefix in ``api_base`` (``http://hallgate:8080/strict``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from proxy.chat.gate_session import RequestContext
from proxy.errors import InvalidRequest, validation_error
from proxy.guardrail.schemas import GUARDRAIL_PATH, GuardrailRequest
from proxy.guardrail.service import GuardrailService, PromptCache

router = APIRouter()
ROUTE_HEADER = "x-hallgate-route"
HIDDEN_VALUE = "[present]"  # LiteLLM's placeholder for a header it does not forward


def parse_request(raw: bytes) -> GuardrailRequest:
    try:
        return GuardrailRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0].get("type") in ("json_invalid", "model_type"):
            raise InvalidRequest("The request body must be a JSON object.") from None
        raise validation_error(list(errors)) from None


def route_of(req: GuardrailRequest, request: Request) -> str | None:
    forwarded = {k.lower(): v for k, v in (req.request_headers or {}).items()}
    for candidate in (req.param("route"), request.headers.get(ROUTE_HEADER),
                      forwarded.get(ROUTE_HEADER)):
        if candidate and candidate != HIDDEN_VALUE:
            return str(candidate)
    return None


def service_for(request: Request) -> GuardrailService:
    state = request.app.state
    prompts = getattr(state, "guardrail_prompts", None)
    if prompts is None:  # one per app, made on first use (one event loop: no race)
        prompts = state.guardrail_prompts = PromptCache()
    return GuardrailService(state.chat.gatekeeper, state.registry, prompts)


@router.post(GUARDRAIL_PATH)
@router.post("/{route_prefix:path}" + GUARDRAIL_PATH)  # api_base=http://gw/<prefix>
async def litellm_guardrail(request: Request) -> JSONResponse:
    req = parse_request(await request.body())
    ctx = RequestContext(path=request.url.path, request_id=request.state.request_id,
                         route_header=route_of(req, request),
                         key_name=getattr(request.state, "key_name", None))
    result, headers = await service_for(request).check(req, ctx)
    return JSONResponse(result.model_dump(exclude_none=True), headers=headers)
