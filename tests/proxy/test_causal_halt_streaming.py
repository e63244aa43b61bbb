"""Causal HALT as a progressive stream's prefix judge and its final judge, through the
real gateway with the openai SDK against the fake upstream: each check reads only the new
tokens, and the whole answer's judgement is the stream's carried state (no second pass),
equal to the judgement of the same answer sent as JSON."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import fake_settings
from tests.fake_upstream import Script
from tests.proxy.test_progressive_streaming import QUESTION, TEXT, WORDS, split, stream

CONFIDENT = (-0.01, 8.0)  # (chosen logprob, gap between alternatives)
RISKY = (-2.5, 0.3)

POLICY = """
version: 1
routes:
  - {name: causal, match: {header: causal}, profile: causal}
  - {name: default, default: true, profile: causal}
profiles:
  causal:
    detectors: {halt: {enabled: false}, halt_causal: {enabled: true}}
    streaming: progressive
    action: annotate
    progressive: {holdback_tokens: 8, rescore_every: 8, detector: halt_causal,
                  threshold: 0.3}
"""


@pytest.fixture
def gateway(fake_upstream, start_gateway, tmp_path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(path)))


@pytest.mark.parametrize("shape", [CONFIDENT, RISKY], ids=["confident", "risky"])
def test_the_final_judgement_is_the_streams_state_and_equals_the_json_one(gateway,
                                                                           fake_upstream,
                                                                           shape):
    fake_upstream.script = Script(text=TEXT, token_shapes=(shape,) * len(WORDS),
                                  token_delay_s=0.002)
    _, chunks = stream(gateway, "causal")
    content, refusal, _, verdict, _ = split(chunks)
    assert content == "".join(WORDS) and not refusal  # annotate: never cut
    streamed = verdict["detectors"]["halt_causal"]
    assert streamed["streamed_state"] is True  # no second pass over the answer
    assert "halt" not in verdict["detectors"]  # report-only HALT would re-read it
    assert verdict["progressive"]["checks"] == len(WORDS) // 8
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0)
    whole = client.chat.completions.create(model="fake", messages=QUESTION)
    judged = whole.model_extra["hallgate"]["detectors"]["halt_causal"]
    assert judged["streamed_state"] is False
    assert "halt" in whole.model_extra["hallgate"]["detectors"]  # reported, as always
    assert streamed["risk"] == pytest.approx(judged["risk"], abs=1e-6)
    assert streamed["threshold"] == judged["threshold"]


def test_risky_tokens_cross_the_causal_prefix_threshold(gateway, fake_upstream):
    fake_upstream.script = Script(text=TEXT, token_shapes=(CONFIDENT,) * 8
                                  + (RISKY,) * 32, token_delay_s=0.002)
    _, chunks = stream(gateway, "causal")
    _, _, _, verdict, _ = split(chunks)
    report = verdict["progressive"]
    # causal risk on the shipped checkpoint: 0.17 after the 8 confident tokens, 0.45 at 16
    assert report["max_prefix_risk"] >= report["threshold"] == 0.3
    assert report["would_cut_at_token"] == 16
