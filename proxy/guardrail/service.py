"""Judge an answer LiteLLM already has, with a route's profile, and say allow or block.

    pre_call  check  (input_type "request")   remember the prompt by litellm_call_id
    post_call check  (input_type "response")  gates judge the answer -> NONE | BLOCKED

LiteLLM's post_call payload carries the answer's text but neither the prompt nor the
token logprobs (see schemas.py). So HALT reports missing logprobs (the profile's fail
mode decides), and the prompt that EDFL and the semantic gate need comes from the
pre_call check of the same call (configure the guardrail with ``mode: [pre_call,
post_call]``), from ``structured_messages`` when a LiteLLM version sends them, or from a
``messages`` entry in ``additional_provider_specific_params``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from proxy.chat.gate_session import Answer, Gatekeeper, GateOutcome, RequestContext
from proxy.chat.schemas import ChatCompletionRequest
from proxy.errors import InvalidRequest
from proxy.guardrail.schemas import GuardrailRequest, GuardrailResponse
from proxy.registry import UpstreamRegistry

log = logging.getLogger("hallgate.guardrail")
NO_PROMPT = ("hallgate needs the prompt to judge an answer and LiteLLM's post_call check "
             "does not send it: configure the guardrail with mode: [pre_call, post_call] so "
             "the pre_call check of the same call hands it over.")


class PromptCache:
    """Prompts of pre_call checks by ``litellm_call_id`` until their post_call check;
    bounded in entries and age, so calls that never reach post_call cannot pile up."""

    def __init__(self, max_entries: int = 10_000, ttl_s: float = 600.0):
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[float, list[dict]]] = OrderedDict()

    def put(self, key: str, messages: list[dict]) -> None:
        self._items[key] = (time.monotonic(), messages)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def get(self, key: str | None) -> list[dict] | None:
        """Kept after reading: LiteLLM may retry a post_call check."""
        if key is None or key not in self._items:
            return None
        stored_at, messages = self._items[key]
        if time.monotonic() - stored_at > self.ttl_s:
            del self._items[key]
            return None
        return messages


class GuardrailService:
    def __init__(self, gatekeeper: Gatekeeper, registry: UpstreamRegistry, prompts: PromptCache):
        self.gatekeeper = gatekeeper
        self.registry = registry
        self.prompts = prompts

    async def check(self, req: GuardrailRequest,
                    ctx: RequestContext) -> tuple[GuardrailResponse, dict[str, str]]:
        """The guardrail's answer and the ``x-hallgate-*`` headers of the decision."""
        if req.input_type == "request":
            if req.litellm_call_id and req.structured_messages:
                self.prompts.put(req.litellm_call_id, req.structured_messages)
            return GuardrailResponse(action="NONE"), {}
        messages = self.prompt_for(req)
        if not messages:  # fail closed, readably: LiteLLM shows no body of a 4xx
            log.warning("guardrail check without a prompt: %s", NO_PROMPT)
            return GuardrailResponse(action="BLOCKED", blocked_reason=NO_PROMPT), {}
        # a prompt our chat schema cannot read is a 400 naming the field
        chat = ChatCompletionRequest.parse({"model": self.model_for(req), "messages": messages})
        session = self.gatekeeper.begin(chat, ctx, chat.model)
        try:
            answers = [Answer(i, text, None, "stop") for i, text in enumerate(req.texts or [""])]
            outcome = await session.judge(answers)
        finally:
            await session.aclose()
        return to_guardrail_response(outcome, req), {**session.headers, **outcome.headers}

    def prompt_for(self, req: GuardrailRequest) -> list[dict] | None:
        return (req.structured_messages or req.param("messages")
                or self.prompts.get(req.litellm_call_id))

    def model_for(self, req: GuardrailRequest) -> str:
        """The upstream the gates sample: ``hallgate_model`` from the guardrail's params,
        else the response's model if this gateway serves it, else its first model."""
        names = self.registry.names()
        wanted = req.param("hallgate_model")
        if wanted:
            return wanted  # an unknown name is a 404 naming the known ones
        if req.model in names:
            return req.model
        if not names:
            raise InvalidRequest("This gateway has no upstream model to judge with.")
        return names[0]


def to_guardrail_response(outcome: GateOutcome, req: GuardrailRequest) -> GuardrailResponse:
    """Abstain -> BLOCKED with the reasons (or, with ``on_abstain: replace``, the answer
    replaced by the route's abstention text); a semantic-gate replacement -> the chosen
    answer; otherwise NONE. Shadow and annotate profiles never block."""
    metadata = outcome.metadata
    texts = req.texts or [""]
    if outcome.abstain:
        if req.param("on_abstain") == "replace":
            return GuardrailResponse(action="GUARDRAIL_INTERVENED",
                                     texts=[outcome.replacement or ""] * len(texts),
                                     hallgate=metadata)
        return GuardrailResponse(action="BLOCKED", blocked_reason=blocked_reason(metadata),
                                 hallgate=metadata)
    if outcome.replacement is not None:
        return GuardrailResponse(action="GUARDRAIL_INTERVENED",
                                 texts=[outcome.replacement] + texts[1:], hallgate=metadata)
    return GuardrailResponse(action="NONE", hallgate=metadata)


def blocked_reason(metadata: dict | None) -> str:
    if not metadata:
        return "hallgate abstained"
    reasons = "; ".join(metadata.get("reasons") or ())
    return (f"hallgate abstained (route {metadata.get('route')}, profile "
            f"{metadata.get('profile')}): {reasons}")
