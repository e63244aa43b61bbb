"""A detector added from outside the gateway: a toy registered by this test module (no
edit to proxy/ or policies/) gates a route through the openai SDK against the fake
upstream, with its own settings, threshold resolution, cost and header overrides."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass

import openai
import pytest
from pydantic import Field

from detectors.protocol import (
    AnswerView,
    DetectorSpec,
    Exchange,
    Judgement,
    Needs,
    ProfileContext,
    Threshold,
    ThresholdedSettings,
    resolve_threshold,
    verdict_at,
)
from detectors.registry import REGISTRY
from detectors.sampling import Sample
from tests.conftest import fake_settings

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


class EchoSettings(ThresholdedSettings):
    """Self-consistency in miniature: one extra sample, compared word for word."""

    samples: int = Field(1, ge=1, le=4)  # extra answers drawn at prompt time


@dataclass(frozen=True)
class EchoDetector:
    settings: EchoSettings
    name: str = "echo"
    needs: Needs = Needs(answer_text=True, prompt=True, sampler=True)

    def threshold(self) -> Threshold:
        return resolve_threshold(self.settings.threshold, None, 0.5)

    def start(self, exchange: Exchange) -> Awaitable[list[Sample]]:
        return exchange.sampler(exchange.messages, n=self.settings.samples, top_logprobs=0)

    async def judge(self, exchange: Exchange, answer: AnswerView,
                    started: list[Sample]) -> Judgement:
        """risk = share of samples whose words differ from the answer's."""
        differ = sum(s.text.split() != answer.text.split() for s in started)
        risk = differ / len(started)
        threshold = self.threshold()
        return Judgement(self.name, verdict_at(risk, threshold), risk, threshold,
                         detail={"samples": [s.text for s in started]})


class EchoPlugin:
    def bind(self, settings: EchoSettings, profile: ProfileContext) -> EchoDetector:
        return EchoDetector(settings)


SPEC = DetectorSpec(name="echo", settings=EchoSettings,
                    needs=Needs(answer_text=True, prompt=True, sampler=True),
                    load=EchoPlugin)

POLICY = """\
version: 1
routes:
  - {name: strict, match: {header: strict}, profile: echo-strict}
  - {name: default, default: true, profile: echo}
profiles:
  echo:
    detectors: {halt: {enabled: false}, echo: {enabled: true, samples: 2}}
    action: annotate
    allow_overrides: [echo.threshold]
  echo-strict:
    extends: echo
    detectors: {echo: {threshold: 0.0}}
    action: abstain
"""


@pytest.fixture
def echo_gateway(fake_upstream, start_gateway, tmp_path):
    REGISTRY.register(SPEC)
    try:
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY)
        url = start_gateway(fake_settings(fake_upstream, policy_file=str(policy)))
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    finally:
        REGISTRY.unregister("echo")


def test_a_registered_detector_judges_and_reports_its_cost(echo_gateway, fake_upstream):
    raw = echo_gateway.chat.completions.with_raw_response.create(model="fake",
                                                                 messages=QUESTION)
    meta = raw.parse().model_extra["hallgate"]
    echo = meta["detectors"]["echo"]
    assert echo["status"] == "ok" and echo["counted"] is True
    assert echo["risk"] == 0.0 and echo["verdict"] == "answer"  # the samples agree
    assert meta["decision"] == "answer" and raw.headers["x-hallgate-decision"] == "answer"
    assert meta["detectors"]["halt"]["counted"] is False  # off: reported, never counted
    full = echo_gateway.chat.completions.with_raw_response.create(
        model="fake", messages=QUESTION).parse()
    assert full.choices[0].message.content == "Paris is the capital of France."
    assert len(fake_upstream.requests) == 4  # two answers, one sample call each


def test_its_threshold_comes_from_the_profile_and_gates_the_route(echo_gateway):
    resp = echo_gateway.chat.completions.create(
        model="fake", messages=QUESTION, extra_headers={"x-hallgate-route": "strict"})
    assert resp.choices[0].message.refusal  # risk 0 >= threshold 0: abstain
    meta = resp.model_extra["hallgate"]
    assert meta["decision"] == "abstain" and meta["returned"] == "abstain"
    assert meta["reasons"][0] == "echo: risk 0.00 >= 0.00"


def test_its_knobs_are_overridable_like_any_detector(echo_gateway):
    raw = echo_gateway.chat.completions.with_raw_response.create(
        model="fake", messages=QUESTION, extra_headers={"x-hallgate-echo-threshold": "0"})
    meta = raw.parse().model_extra["hallgate"]
    assert meta["decision"] == "abstain" and meta["returned"] == "answer"  # annotate
    with pytest.raises(openai.BadRequestError) as info:
        echo_gateway.chat.completions.create(
            model="fake", messages=QUESTION, extra_headers={"x-hallgate-echo-samples": "3"})
    assert info.value.body["param"] == "x-hallgate-echo-samples"


def test_the_judgement_carries_threshold_source_and_cost_in_the_audit(fake_upstream,
                                                                       start_gateway, tmp_path):
    REGISTRY.register(SPEC)
    try:
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY)
        audit = tmp_path / "audit.jsonl"
        url = start_gateway(fake_settings(fake_upstream, policy_file=str(policy),
                                          audit={"path": str(audit)}))
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        client.chat.completions.create(model="fake", messages=QUESTION)
    finally:
        REGISTRY.unregister("echo")
    (entry,) = [json.loads(line) for line in audit.read_text().splitlines()]
    echo = entry["scores"]["echo"]
    assert echo["threshold"] == 0.5 and echo["threshold_source"] == "default"
    assert echo["cost"]["upstream_calls"] == 1 and echo["cost"]["ms"] >= 0.0
    assert echo["redacted"] == ["samples"]  # prompt-derived text stays out of the log
    assert entry["usage"]["gate_calls"] == 1
