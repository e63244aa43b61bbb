"""A profile with `combine: learned` in the gateway, through the openai SDK: the combiner
reads HALT's risk and the answer's own logprobs, and its calibrated risk decides."""

from __future__ import annotations

import openai
import pytest

from evaluation.combiner import fit_combiner
from tests.conftest import fake_settings
from tests.policies.test_learned_combiner import synthetic_records

POLICY = """\
version: 1
routes:
  - {name: default, default: true, profile: learned}
profiles:
  learned:
    detectors: {halt: {enabled: true}, edfl: {enabled: false}, semantic: {enabled: false}}
    combine: {mode: learned, model: combiner.json, threshold: THRESHOLD}
    action: annotate
    fail_mode: open
"""


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_the_learned_risk_decides(fake_upstream, start_gateway, tmp_path, threshold):
    fit_combiner(synthetic_records(300), ["halt", "neg_mean_logprob"]).save(
        tmp_path / "combiner.json")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("THRESHOLD", str(threshold)))
    url = start_gateway(fake_settings(fake_upstream, policy_file=str(policy)))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="fake", messages=[{"role": "user", "content": "Capital of France?"}])
    meta = raw.parse().model_extra["hallgate"]
    assert meta["combine"] == "learned" and 0.0 <= meta["risk"] <= 1.0
    assert meta["decision"] == ("abstain" if threshold == 0.0 else "answer")
    assert meta["detectors"]["halt"]["status"] == "ok"
    assert raw.headers["x-hallgate-risk"] == f"{meta['risk']:.4f}"


def test_overrides_on_a_learned_profile(fake_upstream, start_gateway, tmp_path, monkeypatch):
    """The combiner file lies beside the policy, not in the working directory; a request
    that overrides a knob still gets the profile's combiner (read once by the loader)."""
    fit_combiner(synthetic_records(300), ["halt", "neg_mean_logprob"]).save(
        tmp_path / "combiner.json")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("THRESHOLD", "0.0")
                      + "    allow_overrides: [halt.threshold]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = start_gateway(fake_settings(fake_upstream, policy_file=str(policy)))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="fake", messages=[{"role": "user", "content": "Capital of France?"}],
        extra_headers={"x-hallgate-halt-threshold": "0.5"})
    meta = raw.parse().model_extra["hallgate"]
    assert raw.http_response.status_code == 200
    assert meta["combine"] == "learned" and meta["decision"] == "abstain"  # threshold 0
    assert meta["detectors"]["halt"]["threshold"] == 0.5
    assert meta["detectors"]["halt"]["threshold_source"] == "profile"
