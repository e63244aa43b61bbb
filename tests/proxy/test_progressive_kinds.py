"""`progressive.cut_on`: a progressive stream may be cut only when the request asks for
an answer of a kind the profile lists (policies/answer_kind.py); another kind streams
uncut, its checks reported, and the whole answer's judgement decides. Through the real
gateway with the openai SDK against the fake upstream."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import fake_settings
from tests.fake_upstream import Script
from tests.proxy.test_progressive_streaming import TEXT, WORDS, split

CONFIDENT = (-0.01, 8.0)  # (chosen logprob, gap between alternatives)
UNLIKELY = (-3.0, 1.0)  # −min logprob risk 3/4

POLICY = """
version: 1
routes:
  - {name: short, default: true, profile: short}
profiles:
  short:
    detectors: {halt: {enabled: false}, min_logprob: {enabled: true, threshold: 1.0}}
    streaming: progressive
    progressive: {holdback_tokens: 8, rescore_every: 8, threshold: 0.5,
                  cut_on: [short_answer]}
"""


@pytest.fixture
def gateway(fake_upstream, start_gateway, tmp_path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(path)))


def ask(url: str, text: str, **kw):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    return list(client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": text}], stream=True, **kw))


@pytest.mark.parametrize(("text", "kw", "kind"), [
    ("Who was the first emperor of Rome? Answer with a short phrase.", {}, "short_answer"),
    ("Write forty words about Rome.", {"max_tokens": 40}, "short_answer"),
], ids=["directive", "max_tokens"])
def test_a_short_answer_is_cut_where_its_prefix_risk_crosses(gateway, fake_upstream, text,
                                                             kw, kind):
    fake_upstream.script = Script(text=TEXT, token_shapes=(CONFIDENT,) * 16
                                  + (UNLIKELY,) * 24, token_delay_s=0.005)
    content, refusal, _, verdict, _ = split(ask(gateway, text, **kw))
    report = verdict["progressive"]
    assert report["answer_kind"] == kind
    assert report["cut"] is True and report["cut_at_token"] == 24 and refusal
    assert "cuts_off" not in report


def test_another_kind_streams_uncut_and_the_whole_answer_decides(gateway, fake_upstream):
    fake_upstream.script = Script(text=TEXT, token_shapes=(CONFIDENT,) * 16
                                  + (UNLIKELY,) * 24, token_delay_s=0.005)
    content, refusal, _, verdict, _ = split(ask(gateway, "Write forty words about Rome."))
    report = verdict["progressive"]
    assert report["answer_kind"] == "other" and report["cut"] is False
    assert report["would_cut_at_token"] == 24  # checked and reported, not cut
    assert "progressive.cut_on" in report["cuts_off"]
    assert content == "".join(WORDS) and not refusal  # the whole answer passed (1.0)
    assert verdict["decision"] == "answer"
