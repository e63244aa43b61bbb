"""With `include_prompt: false` no prompt-derived text reaches the audit log
(EDFL skeletons, sampled answers, the hard rule's escalation reason): hashes and scores
only. A marker word in the prompt (and in the model's answers) must not appear."""

from __future__ import annotations

import json

import openai
import pytest

from proxy.audit_redact import redact_decision, scrub_reason
from tests.conftest import fake_settings

MARKER = "Zorblaxian"
PROMPT = [{"role": "user", "content": f"Write a poem about {MARKER} Quimby who visited "
           f"Paris in 1985. When did {MARKER} Quimby arrive?"}]

POLICY = """
version: 1
routes:
  - {name: everything, match: {header: everything}, profile: everything}
  - {name: code, match: {header: code}, profile: creative}
  - {name: default, default: true, profile: everything}
profiles:
  everything:
    extends: strict-factual
    detectors:
      halt: {enabled: true, threshold: 1.0}
      edfl: {enabled: true, m: 3}
      semantic: {enabled: true, M: 3, m: 2, entailment: lexical}
  creative:
    extends: code-creative
    detectors: {semantic: {enabled: false}}
    escalate_factual_to: everything
"""


def run_and_read(fake_upstream, start_gateway, tmp_path, include_prompt: bool) -> str:
    fake_upstream.script.text = f"{MARKER} Quimby arrived in Paris in 1985."
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    audit = tmp_path / f"audit-{include_prompt}.jsonl"
    url = start_gateway(fake_settings(fake_upstream, policy_file=str(policy),
                                      audit={"path": str(audit),
                                             "include_prompt": include_prompt}))
    for route in ("everything", "code"):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0,
                               default_headers={"x-hallgate-route": route})
        client.chat.completions.create(model="fake", messages=PROMPT)
    return audit.read_text()


def test_no_prompt_text_in_the_audit_without_include_prompt(fake_upstream, start_gateway,
                                                             tmp_path):
    text = run_and_read(fake_upstream, start_gateway, tmp_path, include_prompt=False)
    assert MARKER.lower() not in text.lower()
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) == 2
    first, escalated = records
    assert len(first["prompt_sha256"]) == 64 and "prompt" not in first
    scores = first["scores"]
    assert scores["edfl"]["status"] == "ok" and isinstance(scores["edfl"]["P"], float)
    assert "skeletons" in scores["edfl"]["redacted"]
    assert scores["semantic"]["status"] == "ok" and "answers" in scores["semantic"]["redacted"]
    assert escalated["escalated_by_hard_rule"] is True
    assert len(escalated["escalation_reason_sha256"]) == 64


def test_the_marker_is_there_when_prompts_are_kept(fake_upstream, start_gateway, tmp_path):
    """The same requests with include_prompt: true: proves the test above can fail."""
    text = run_and_read(fake_upstream, start_gateway, tmp_path, include_prompt=True)
    assert MARKER in text and "skeletons" in text


@pytest.mark.parametrize(("reason", "expected"), [
    ("halt: risk 0.83 >= 0.61", "halt: risk 0.83 >= 0.61"),
    ("edfl: error (UpstreamError: Upstream rejected: Zorblaxian is bad), counted as abstain "
     "(fail closed)", "edfl: error (UpstreamError), counted as abstain (fail closed)"),
    ("prompt names 'Zorblaxian Quimby' together with '1985'", "prompt names … together with …"),
])
def test_reasons_keep_their_template_and_lose_the_text(reason, expected):
    assert scrub_reason(reason) == expected


def test_free_text_outside_the_templates_is_hashed():
    assert scrub_reason("semantic: top meaning is Zorblaxian → x").startswith("sha256:")


def test_redacted_decision_keeps_numbers_and_enumerations():
    decision = {"decision": "abstain", "reasons": [], "detectors": {"edfl": {
        "verdict": "abstain", "risk": 0.5, "S": [0.1, 0.2], "methods": ["logprobs"],
        "skeletons": ["x"], "mode": "closed_book", "reason": "ISR 0.420 < 1.0",
        "clusters": [{"text": "Zorblaxian", "mass": 0.5}]}}}
    edfl = redact_decision(decision)["detectors"]["edfl"]
    assert edfl["S"] == [0.1, 0.2] and edfl["methods"] == ["logprobs"]
    assert edfl["mode"] == "closed_book" and edfl["reason"] == "ISR 0.420 < 1.0"
    assert "skeletons" not in edfl and edfl["clusters"] == [{"mass": 0.5}]
    assert edfl["redacted"] == ["skeletons", "text"]
