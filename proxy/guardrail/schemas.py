"""LiteLLM's Generic Guardrail API contract, as its proxy sends and reads it.

Taken from litellm's own types (``litellm/types/proxy/guardrails/guardrail_hooks/
generic_guardrail_api.py``, ``GenericGuardrailAPIRequest`` / ``...Response``) so that
this module never imports litellm. Unknown fields pass (``extra="allow"``): LiteLLM adds
fields between releases.

What LiteLLM sends, by hook:
    pre_call   input_type "request":  texts (message texts), structured_messages (the
               chat messages), model (the client's model name), litellm_call_id
    post_call  input_type "response": texts (the answer of each choice), model (the
               response's model), litellm_call_id; no messages and no logprobs
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GUARDRAIL_PATH = "/beta/litellm_basic_guardrail_api"  # LiteLLM appends it to api_base


class GuardrailRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input_type: Literal["request", "response"]
    litellm_call_id: str | None = None  # the same id in the pre_call and post_call checks
    litellm_trace_id: str | None = None
    structured_messages: list[dict[str, Any]] | None = None
    texts: list[str] | None = None
    images: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    request_data: dict[str, Any] = Field(default_factory=dict)  # user_api_key_* metadata
    request_headers: dict[str, str] | None = None  # sanitised: "[present]" unless allowlisted
    litellm_version: str | None = None
    additional_provider_specific_params: dict[str, Any] | None = None
    model: str | None = None

    def param(self, name: str) -> Any:
        """A knob from the guardrail's config or the request's dynamic ``extra_body``."""
        return (self.additional_provider_specific_params or {}).get(name)


class GuardrailResponse(BaseModel):
    """``action``: NONE lets it pass, BLOCKED makes LiteLLM raise with ``blocked_reason``,
    GUARDRAIL_INTERVENED replaces the checked ``texts``."""

    action: Literal["NONE", "BLOCKED", "GUARDRAIL_INTERVENED"]
    blocked_reason: str | None = None
    texts: list[str] | None = None
    hallgate: dict[str, Any] | None = None  # the decision; LiteLLM ignores it, logs keep it
