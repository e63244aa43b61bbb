"""Models that reject the logprobs parameter (OpenAI o1/o3/o4-mini answer
400/403) still work through hallgate. With `logprobs: auto` the gateway retries without
them, remembers it for the model and counts it; HALT reports missing logprobs, EDFL
samples its labels, and the `black-box` profile judges with semantic + EDFL."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import fake_settings

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]

POLICY = """
version: 1
routes:
  - {name: black-box, match: {header: black-box}, profile: black-box-lexical}
  - {name: default, default: true, profile: halt-open}
profiles:
  halt-open:
    extends: strict-factual
    detectors: {edfl: {enabled: false}}
    fail_mode: open
  black-box-lexical:
    extends: black-box
    detectors: {edfl: {m: 2, n: 3}, semantic: {M: 3, m: 2, entailment: lexical}}
"""


@pytest.fixture
def start(fake_upstream, start_gateway, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)

    def start_with(logprobs="auto") -> openai.OpenAI:
        url = start_gateway(fake_settings(fake_upstream, policy_file=str(policy),
                                          logprobs=logprobs))
        start_with.url = url
        return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)

    return start_with


def ask(client: openai.OpenAI, stream: bool, **kw) -> tuple[str, dict | None]:
    if not stream:
        resp = client.chat.completions.create(model="fake", messages=MESSAGES, **kw)
        return resp.choices[0].message.content, resp.model_extra.get("hallgate")
    chunks = list(client.chat.completions.create(model="fake", messages=MESSAGES,
                                                 stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, None


def asked_logprobs(body: dict) -> bool:
    return "logprobs" in body or "top_logprobs" in body


@pytest.mark.parametrize("status", [400, 403])
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_auto_retries_without_logprobs_and_remembers(start, fake_upstream, status, stream):
    fake_upstream.script.rejects_logprobs = status
    client = start("auto")
    text, meta = ask(client, stream)
    assert text == "Paris is the capital of France."
    assert [asked_logprobs(b) for b in fake_upstream.requests] == [True, False]
    if meta is not None:  # HALT had nothing to read; fail open leaves it out
        assert meta["detectors"]["halt"]["status"] == "missing_logprobs"
        assert meta["decision"] == "answer"
    ask(client, stream)  # remembered: no second rejection
    assert [asked_logprobs(b) for b in fake_upstream.requests] == [True, False, False]
    metrics = httpx.get(f"{start.url}/metrics").text
    assert 'hallgate_logprobs_rejected_total{model="fake"} 1.0' in metrics


def test_a_client_asking_for_logprobs_gets_an_answer_without_them(start, fake_upstream):
    fake_upstream.script.rejects_logprobs = 400
    resp = start("auto").chat.completions.create(model="fake", messages=MESSAGES,
                                                 logprobs=True, top_logprobs=3)
    assert resp.choices[0].message.content and resp.choices[0].logprobs is None


def test_false_never_asks(start, fake_upstream):
    fake_upstream.script.rejects_logprobs = 400
    text, _ = ask(start(False), stream=False)
    assert text and not any(asked_logprobs(b) for b in fake_upstream.requests)


def test_true_passes_the_rejection_on(start, fake_upstream):
    fake_upstream.script.rejects_logprobs = 400
    with pytest.raises(openai.BadRequestError) as exc:
        ask(start(True), stream=False)
    assert "logprobs" in exc.value.body["message"] and len(fake_upstream.requests) == 1


def test_other_400s_are_not_mistaken_for_a_logprobs_rejection(start, fake_upstream):
    fake_upstream.fail_next("400")
    with pytest.raises(openai.BadRequestError):
        ask(start("auto"), stream=False)
    assert len(fake_upstream.requests) == 1


def test_black_box_profile_judges_a_reasoning_model(start, fake_upstream):
    fake_upstream.script.rejects_logprobs = 400
    client = start("auto")
    for _ in range(2):  # the first request's concurrent gate calls each learn it
        fake_upstream.requests.clear()
        _, meta = ask(client, stream=False, extra_headers={"x-hallgate-route": "black-box"})
        assert meta["profile"] == "black-box-lexical"
        edfl, semantic = meta["detectors"]["edfl"], meta["detectors"]["semantic"]
        assert edfl["status"] == "ok" and semantic["status"] == "ok"
        assert "halt" not in meta["detectors"] or not meta["detectors"]["halt"]["counted"]
    assert len(fake_upstream.requests) > 1  # the answer and the gates' samples
    assert not any(asked_logprobs(b) for b in fake_upstream.requests)
