"""`target_risk` in a profile, through the openai SDK against the fake upstream: the
model's bundle's certified operating point for (α, δ) is the threshold; α with no
certified threshold abstains and says why; a profile's own threshold still wins; a
target outside (0, 1) is refused at policy load with its key."""

from __future__ import annotations

import openai
import pytest

from policies.loader import load_policy
from policies.yaml_source import PolicyError
from tests.calibration.bundles import write_bundle
from tests.conftest import fake_settings
from tests.fake_upstream import Script

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
RISKY = -3.0  # every token's logprob: mean_logprob risk 3/4

POLICY = """
version: 1
routes:
  - {name: certified, match: {header: certified}, profile: certified}
  - {name: unreachable, match: {header: unreachable}, profile: unreachable}
  - {name: explicit, match: {header: explicit}, profile: explicit}
  - {name: default, default: true, profile: certified}
profiles:
  certified:
    detectors: {halt: {enabled: false}, mean_logprob: {enabled: true}}
    target_risk: 0.2
    target_delta: 0.05
  unreachable:
    extends: certified
    target_risk: 0.01
  explicit:
    extends: certified
    detectors: {mean_logprob: {threshold: 0.5}}
"""


def point(alpha: float, delta: float, threshold: float | None) -> dict:
    return {"alpha": alpha, "delta": delta, "detector": "mean_logprob",
            "threshold": threshold, "coverage": 0.5 if threshold else 0.0,
            "answered": 100 if threshold else 0, "errors": 10 if threshold else 0,
            "upper_bound": 0.19 if threshold else None}


@pytest.fixture
def url(fake_upstream, start_gateway, tmp_path) -> str:
    write_bundle(tmp_path / "bundles" / "fake", thresholds={"mean_logprob": 0.3},
                 operating_points=[point(0.2, 0.05, 0.8), point(0.2, 0.1, 0.6),
                                   point(0.01, 0.05, None)])
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    fake_upstream.script = Script(logprob=RISKY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(policy),
                                       calibration_dir=str(tmp_path / "bundles")))


def ask(url: str, route: str) -> dict:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0,
                           default_headers={"x-hallgate-route": route})
    return client.chat.completions.create(model="fake", messages=QUESTION
                                          ).model_extra["hallgate"]


def test_the_bundles_certified_threshold_for_the_target_is_used(url):
    meta = ask(url, "certified")
    judged = meta["detectors"]["mean_logprob"]
    # (0.2, δ 0.05) -> 0.8, not the (0.2, δ 0.1) point nor the bundle's answer threshold
    assert judged["threshold"] == 0.8 and judged["threshold_source"] == "certified"
    assert meta["decision"] == "answer"  # risk 0.75 < 0.8


def test_a_target_with_no_certified_threshold_abstains_and_says_why(url):
    meta = ask(url, "unreachable")
    assert meta["detectors"]["mean_logprob"]["threshold_source"] == "certified"
    assert meta["decision"] == "abstain"
    assert meta["reasons"][-1] == ("target_risk 0.01 (delta 0.05): no threshold of "
                                   "mean_logprob is certified for this model, so it abstains")


def test_a_threshold_the_profile_sets_wins_over_the_target(url):
    meta = ask(url, "explicit")
    judged = meta["detectors"]["mean_logprob"]
    assert judged["threshold"] == 0.5 and judged["threshold_source"] == "profile"
    assert meta["decision"] == "abstain"


def test_a_target_risk_outside_0_1_is_refused_with_its_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.replace("target_risk: 0.01", "target_risk: 1.5"))
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert "target_risk" in str(err.value) and "p.yaml" in str(err.value)
