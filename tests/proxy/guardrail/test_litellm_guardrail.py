"""hallgate as LiteLLM's Generic Guardrail: LiteLLM's own client code (the installed
litellm's GenericGuardrailAPI, which builds and posts the exact payload its proxy sends)
against a real gateway on loopback, judging with the semantic gate on the fake upstream.

LiteLLM's post_call payload carries the answer's text, not the prompt and not the token
logprobs: the prompt comes from the pre_call check of the same litellm_call_id, and HALT
reports missing logprobs."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import httpx
import pytest

from tests.conftest import fake_settings

pytest.importorskip("litellm.proxy.guardrails.guardrail_hooks.generic_guardrail_api")
from litellm.exceptions import GuardrailRaisedException  # noqa: E402
from litellm.proxy.guardrails.guardrail_hooks.generic_guardrail_api import (  # noqa: E402
    GenericGuardrailAPI,
)

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
# A hallucination-shaped answer: the model's own samples disagree with it and each other.
SCATTERED = ["Marseille.", "Nice.", "Toulouse.", "Lille.", "Lyon."]
POLICY = """
version: 1
routes:
  - {name: strict, match: {header: strict, path_prefix: /strict}, profile: semantic}
  - {name: default, default: true, profile: shadow-semantic}
profiles:
  semantic:
    detectors:
      halt: {enabled: false}
      semantic: {enabled: true, M: 4, m: 1, skeleton_samples: 1, entailment: lexical}
    fail_mode: open
    abstention_text: "Not sure enough to say."
  shadow-semantic: {extends: semantic, action: shadow}
"""


@pytest.fixture
def gateway_url(fake_upstream, start_gateway, tmp_path) -> str:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(policy)))


def guardrail(url: str, **params) -> GenericGuardrailAPI:
    return GenericGuardrailAPI(api_base=url, guardrail_name="hallgate",
                               event_hook=["pre_call", "post_call"], default_on=True,
                               additional_provider_specific_params=params or None)


def call() -> SimpleNamespace:
    """What LiteLLM's logging object gives the guardrail: the call's ids."""
    return SimpleNamespace(litellm_call_id=str(uuid.uuid4()), litellm_trace_id="t",
                           model_call_details={})


async def check(g: GenericGuardrailAPI, answer: str, logging_obj=None) -> dict:
    """LiteLLM's pre_call check (the prompt), then its post_call check (the answer)."""
    logging_obj = logging_obj or call()
    await g.apply_guardrail(inputs={"texts": [QUESTION[0]["content"]],
                                    "structured_messages": QUESTION, "model": "fake"},
                            request_data={}, input_type="request", logging_obj=logging_obj)
    return await g.apply_guardrail(inputs={"texts": [answer], "model": "fake-model"},
                                   request_data={}, input_type="response",
                                   logging_obj=logging_obj)


async def test_a_consistent_answer_passes(gateway_url):
    out = await check(guardrail(gateway_url, route="strict"), "Paris.")
    assert out["texts"] == ["Paris."]


async def test_a_hallucination_shaped_answer_is_blocked_with_reasons(gateway_url,
                                                                    fake_upstream):
    fake_upstream.script.texts.extend(SCATTERED)
    with pytest.raises(GuardrailRaisedException) as exc:
        await check(guardrail(gateway_url, route="strict"), "Lyon.")
    message = str(exc.value)
    assert "hallgate abstained (route strict, profile semantic)" in message
    assert "semantic" in message and "halt" not in message


async def test_route_by_path_prefix_and_shadow_never_blocks(gateway_url, fake_upstream):
    fake_upstream.script.texts.extend(SCATTERED)
    await check(guardrail(gateway_url), "Lyon.")  # default route: shadow, passes
    fake_upstream.script.texts.extend(SCATTERED)
    with pytest.raises(GuardrailRaisedException):
        await check(guardrail(f"{gateway_url}/strict"), "Lyon.")


async def test_on_abstain_replace_returns_the_abstention_text(gateway_url, fake_upstream):
    fake_upstream.script.texts.extend(SCATTERED)
    out = await check(guardrail(gateway_url, route="strict", on_abstain="replace"), "Lyon.")
    assert out["texts"] == ["Not sure enough to say."]


async def test_without_the_pre_call_check_the_block_says_what_to_configure(gateway_url):
    g = guardrail(gateway_url, route="strict")
    with pytest.raises(GuardrailRaisedException, match="mode: \\[pre_call, post_call\\]"):
        await g.apply_guardrail(inputs={"texts": ["Paris."]}, request_data={},
                                input_type="response", logging_obj=call())


def test_the_endpoint_speaks_the_contract_over_plain_http(gateway_url):
    """The payload shape LiteLLM's GenericGuardrailAPIRequest dumps, posted by hand."""
    from litellm.types.proxy.guardrails.guardrail_hooks.generic_guardrail_api import (
        GenericGuardrailAPIRequest,
    )

    body = GenericGuardrailAPIRequest(
        input_type="response", litellm_call_id="c1", texts=["Paris."], request_data={},
        structured_messages=QUESTION, model="fake-model",
        additional_provider_specific_params={"route": "strict"}).model_dump(mode="json")
    r = httpx.post(f"{gateway_url}/beta/litellm_basic_guardrail_api", json=body, timeout=30)
    assert r.status_code == 200 and r.json()["action"] == "NONE"
    assert r.json()["hallgate"]["detectors"]["semantic"]["status"] == "ok"
    assert r.headers["x-hallgate-route"] == "strict"


def test_prompt_cache_is_bounded_and_expires(monkeypatch):
    from proxy.guardrail import service

    cache = service.PromptCache(max_entries=2, ttl_s=10)
    now = [100.0]
    monkeypatch.setattr(service.time, "monotonic", lambda: now[0])
    for key in ("a", "b", "c"):
        cache.put(key, [{"role": "user", "content": key}])
    assert cache.get("a") is None and cache.get("b") and cache.get("b")  # kept for retries
    now[0] += 11
    assert cache.get("c") is None
