"""The default policy (policies/examples/default.yaml) on the real embedded model."""

from __future__ import annotations

import math

import openai
import pytest

from proxy.config import EMBEDDED_MODEL_NAME

pytestmark = pytest.mark.model

FABRICATED = [{"role": "user", "content": "What did Professor Zorblax Quentin discover at "
                                          "the 1987 Geneva Conference on Tidal Clocks?"}]
# A request this model answers consistently: the gate's seeded samples (detectors.semantic
# .seed) put all five answers in one meaning. "returns the sum of two numbers" does not:
# at temperature 1 its samples split (P* 0.6) and the gate rightly abstains.
CODE = [{"role": "user", "content": "Write a Python function that reverses a string."}]
CREATIVE_FACTUAL = [{"role": "user", "content": "Write a short poem about what Barack "
                                                "Obama did in 2009."}]


def route_client(url: str, route: str | None, **headers: str) -> openai.OpenAI:
    """A client for ``route`` by its header; None: no header, i.e. the default route (a
    route header must name a route that has one: unknown values are a 400)."""
    route_header = {"x-hallgate-route": route} if route else {}
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600,
                         default_headers={**route_header, **headers})


def ask(client: openai.OpenAI, messages: list[dict], **kw):
    return client.chat.completions.with_raw_response.create(
        model=EMBEDDED_MODEL_NAME, messages=messages, max_tokens=48, temperature=0, seed=7,
        **kw)


def test_strict_route_abstains_on_a_fabricated_person_and_event(embedded_gateway):
    raw = ask(route_client(embedded_gateway, "strict"), FABRICATED)
    resp = raw.parse()
    meta = resp.model_extra["hallgate"]
    assert raw.http_response.headers["x-hallgate-decision"] == "abstain", meta["reasons"]
    assert resp.choices[0].message.refusal == resp.choices[0].message.content
    assert meta["profile"] == "strict-factual"
    assert {"halt", "edfl"} <= set(meta["detectors"])


def test_code_route_answers_a_small_code_request(embedded_gateway):
    raw = ask(route_client(embedded_gateway, "code"), CODE)
    resp = raw.parse()
    meta = resp.model_extra["hallgate"]
    assert raw.http_response.headers["x-hallgate-decision"] == "answer", meta["reasons"]
    assert meta["profile"] == "code-creative-local" and not meta["escalated_by_hard_rule"]
    assert "def " in resp.choices[0].message.content


def test_shadow_route_never_blocks(embedded_gateway):
    for messages in (FABRICATED, CODE):
        raw = ask(route_client(embedded_gateway, "shadow"), messages)
        assert raw.http_response.headers["x-hallgate-returned"] == "answer"
        assert raw.parse().choices[0].message.refusal is None


def test_hard_rule_fires_on_a_creative_prompt_naming_a_person_and_a_year(embedded_gateway):
    resp = ask(route_client(embedded_gateway, "code"), CREATIVE_FACTUAL).parse()
    meta = resp.model_extra["hallgate"]
    assert meta["escalated_by_hard_rule"] is True
    assert meta["escalated_from"] == "code-creative-local"
    assert meta["profile"] == "strict-factual" and "Barack Obama" in meta["escalation_reason"]


def test_header_overrides_are_refused_unless_allowed(embedded_gateway):
    with pytest.raises(openai.BadRequestError) as exc:
        ask(route_client(embedded_gateway, "strict", **{"x-hallgate-action": "shadow"}),
            FABRICATED)
    assert exc.value.body["code"] == "override_refused"
    resp = ask(route_client(embedded_gateway, None, **{"x-hallgate-action": "abstain"}),
               FABRICATED).parse()
    assert resp.model_extra["hallgate"]["action"] == "abstain"


def test_fast_route_judges_from_the_answers_own_logprobs(embedded_gateway):
    """fast-factual on real logprobs: HALT and the mean top-k entropy, both with their
    calibrated thresholds, abstaining iff either does; no call beyond the answer."""
    raw = ask(route_client(embedded_gateway, "fast"), FABRICATED)
    resp = raw.parse()
    meta = resp.model_extra["hallgate"]
    assert meta["profile"] == "fast-factual"
    judged = {n: d for n, d in meta["detectors"].items() if d["counted"]}
    assert set(judged) == {"halt", "topk_entropy"}
    for d in judged.values():
        assert d["status"] == "ok" and 0.0 <= d["risk"] <= 1.0
        assert d["threshold_source"] == "calibrated"
        assert d["verdict"] == ("abstain" if d["risk"] >= d["threshold"] else "answer")
    either = any(d["verdict"] == "abstain" for d in judged.values())
    assert meta["decision"] == ("abstain" if either else "answer"), meta["reasons"]
    assert raw.http_response.headers["x-hallgate-decision"] == meta["decision"]
    assert (resp.choices[0].message.refusal is not None) == either


def test_every_logprob_score_on_real_logprobs(embedded_gateway):
    """The four free scores switched on per request (fast-factual allows it), annotated:
    each judged with its calibrated threshold, and the two maps of −mean logprob agree."""
    headers = {"x-hallgate-action": "annotate", "x-hallgate-mean-logprob-enabled": "true",
               "x-hallgate-min-logprob-enabled": "true",
               "x-hallgate-seq-prob-enabled": "true"}
    raw = ask(route_client(embedded_gateway, "fast", **headers), FABRICATED)
    resp = raw.parse()
    meta = resp.model_extra["hallgate"]
    names = ("mean_logprob", "min_logprob", "topk_entropy", "seq_prob")
    for name in names:
        d = meta["detectors"][name]
        assert d["status"] == "ok" and d["counted"], (name, d)
        assert 0.0 < d["risk"] < 1.0 and d["threshold_source"] == "calibrated"
    r = meta["detectors"]["mean_logprob"]["risk"]
    s = r / (1 - r)  # −mean token logprob
    assert meta["detectors"]["seq_prob"]["risk"] == pytest.approx(1 - math.exp(-s))
    assert meta["detectors"]["min_logprob"]["risk"] >= r  # the least likely token
    assert meta["returned"] == "answer" and resp.choices[0].message.refusal is None
    assert len(resp.choices[0].message.content) > 0
