"""The free logprob detectors in the gateway, through the openai SDK against the fake
upstream: alone on a route, as a progressive stream's prefix judge, and in the example
policy's fast-factual profile beside HALT. They cost no upstream call."""

from __future__ import annotations

import openai
import pytest

from detectors.logprob_stats.detector import calibrated_thresholds
from policies.loader import EXAMPLES_DIR
from tests.conftest import fake_settings
from tests.fake_upstream import Script
from tests.proxy.test_progressive_streaming import QUESTION, TEXT, WORDS, split, stream

CONFIDENT = (-0.01, 8.0)  # (chosen logprob, gap between alternatives)
UNLIKELY = (-3.0, 1.0)  # a token the model gave e^-3 ≈ 5 %: −min logprob risk 3/4

POLICY = """
version: 1
routes:
  - {name: mean, match: {header: mean}, profile: mean}
  - {name: live, match: {header: live}, profile: live}
  - {name: named, match: {header: named}, profile: named}
  - {name: default, default: true, profile: mean}
profiles:
  mean:
    detectors: {halt: {enabled: false}, mean_logprob: {enabled: true}}
  live:
    detectors: {halt: {enabled: false}, min_logprob: {enabled: true, threshold: 1.0}}
    streaming: progressive
    progressive: {holdback_tokens: 8, rescore_every: 8, threshold: 0.5}
  named:
    detectors: {halt: {enabled: true, threshold: 1.0}, mean_logprob: {enabled: true,
                                                                      threshold: 1.0}}
    streaming: progressive
    progressive: {holdback_tokens: 8, rescore_every: 8, threshold: 0.5,
                  detector: mean_logprob}
"""


@pytest.fixture
def gateway(fake_upstream, start_gateway, tmp_path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(path)))


def ask(url: str, route: str):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0,
                           default_headers={"x-hallgate-route": route})
    return client.chat.completions.create(model="fake", messages=QUESTION)


@pytest.mark.parametrize(("logprob", "decision"), [(-0.05, "answer"), (-3.0, "abstain")])
def test_mean_logprob_gates_a_route_alone(gateway, fake_upstream, logprob, decision):
    fake_upstream.script = Script(logprob=logprob)
    resp = ask(gateway, "mean")
    meta = resp.model_extra["hallgate"]
    judged = meta["detectors"]["mean_logprob"]
    s = -logprob
    assert judged["risk"] == pytest.approx(s / (1 + s))
    assert judged["threshold"] == pytest.approx(calibrated_thresholds()["mean_logprob"])
    assert judged["threshold_source"] == "calibrated"
    assert meta["decision"] == decision
    assert (resp.choices[0].message.refusal is not None) == (decision == "abstain")
    assert len(fake_upstream.requests) == 1  # free: the answer's own call only


def test_a_logprob_score_judges_progressive_prefixes_without_halt(gateway, fake_upstream):
    fake_upstream.script = Script(text=TEXT, token_shapes=(CONFIDENT,) * 16
                                  + (UNLIKELY,) * 24, token_delay_s=0.02)
    headers, chunks = stream(gateway, "live")
    content, refusal, finish, verdict, _ = split(chunks)
    report = verdict["progressive"]
    assert report["cut"] is True and report["cut_at_token"] == 24  # first check after it
    assert report["reason"].startswith("min_logprob prefix risk 0.750 >= 0.500")
    assert content == "".join(WORDS[:report["released_tokens"]]) and refusal
    assert verdict["detectors"]["min_logprob"]["threshold"] == 0.5
    assert verdict["detectors"]["min_logprob"]["threshold_source"] == "profile"


def test_a_profile_names_its_prefix_judge_beside_halt(gateway, fake_upstream):
    """HALT comes first in registry order; `progressive.detector` makes the running
    −mean-logprob judge the prefixes (its sums carried from check to check) while HALT
    still judges the whole answer."""
    fake_upstream.script = Script(text=TEXT, token_shapes=(CONFIDENT,) * 16
                                  + (UNLIKELY,) * 24, token_delay_s=0.02)
    headers, chunks = stream(gateway, "named")
    content, refusal, finish, verdict, _ = split(chunks)
    report = verdict["progressive"]
    # mean over 24 tokens: (16·0.01 + 8·3) / 24 = 1.007 nats, squashed 0.502
    assert report["cut"] is True and report["cut_at_token"] == 24
    assert report["checks"] == 3
    assert report["reason"].startswith("mean_logprob prefix risk 0.502 >= 0.500")
    assert content == "".join(WORDS[:report["released_tokens"]]) and refusal


def test_fast_factual_runs_halt_and_the_entropy_at_no_extra_call(fake_upstream,
                                                                 start_gateway):
    url = start_gateway(fake_settings(fake_upstream,
                                      policy_file=str(EXAMPLES_DIR / "default.yaml")))
    resp = ask(url, "fast")
    meta = resp.model_extra["hallgate"]
    assert meta["profile"] == "fast-factual" and meta["combine"] == "any"
    counted = {n for n, d in meta["detectors"].items() if d["counted"]}
    assert counted == {"halt", "topk_entropy"}
    assert meta["detectors"]["topk_entropy"]["threshold_source"] == "calibrated"
    assert meta["detectors"]["halt"]["threshold_source"] == "calibrated"  # the checkpoint's
    assert len(fake_upstream.requests) == 1
