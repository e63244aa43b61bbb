"""A judged exchange -> its frame (the gateway) -> its row (the writer process): the row
says what ``Decision.to_dict()`` says, keeps no text without ``include_prompt``, and
hashes the prompt as the audit log does."""

from __future__ import annotations

import math

import numpy as np
import orjson

from detectors.protocol import Judgement, Threshold
from detectors.verdict import Verdict
from policies import decide, load_policy_text
from policies.decision import Escalation
from proxy.audit import prompt_sha256
from proxy.chat.gate_session import Answer
from proxy.store.records import detector_dicts, exchange_frame, row_from_frame

POLICY = """
version: 1
routes:
  - {name: kept, default: true, profile: judged}
profiles:
  judged:
    extends: strict-factual
    action: annotate
    detectors: {halt: {enabled: true}, edfl: {enabled: true}}
"""
MARKER = "Zorblaxian"
MESSAGES = [{"role": "user", "content": f"Who is {MARKER} Quimby? ünïcode"}]
TOKENS = [{"token": MARKER, "logprob": -0.5, "bytes": None,
           "top_logprobs": [{"token": MARKER, "logprob": -0.5}, {"token": "x", "logprob": -2.0}]},
          {"token": "!", "logprob": -math.inf, "top_logprobs": []}]


def decision():
    profile = load_policy_text(POLICY).profiles["judged"]
    halt = Judgement("halt", Verdict.ABSTAIN, 0.8, Threshold(0.5, "calibrated"),
                     detail={"features": (1.0, float("nan")), "score": np.float32(0.25),
                             "n": np.int64(3), "quoted": f"'{MARKER}'"})
    return decide(profile, {"halt": halt, "edfl": RuntimeError(f"upstream said {MARKER}")},
                  route="kept", escalation=Escalation("code-creative", f"names '{MARKER}'"))


def frame(include_prompt: bool, messages=MESSAGES, tokens=TOKENS) -> bytes:
    return exchange_frame(response_id="chatcmpl-1", request_id="r", created_at=0.0,
                          model="fake", key_name="k", bundle_id=None, messages=messages,
                          decision=decision(), answer=Answer(0, f"{MARKER} is a cat", tokens),
                          include_prompt=include_prompt)


def test_each_detector_is_stored_as_the_decision_writes_it():
    judged = decision()
    sent = orjson.loads(frame(include_prompt=True))["decision"]
    assert detector_dicts(sent["detectors"]) == judged.to_dict()["detectors"]
    assert sent["verdict"] == judged.verdict.value and sent["reasons"] == list(judged.reasons)


def test_without_include_prompt_no_text_reaches_the_row():
    row = row_from_frame(frame(include_prompt=False), include_prompt=False)
    assert MARKER not in orjson.dumps(row).decode()
    assert row["prompt"] is None and row["answer"] is None and row["tokens"] is None
    assert row["logprobs"] == {"chosen": [-0.5, None], "top": [[-0.5, -2.0], []]}
    assert row["detectors"]["halt"]["score"] == 0.25 and row["detectors"]["halt"]["n"] == 3
    assert "quoted" in row["detectors"]["halt"]["redacted"]
    assert b'"tokens":null' in frame(include_prompt=False)  # token strings never cross


def test_with_include_prompt_the_row_keeps_prompt_answer_and_token_strings():
    row = row_from_frame(frame(include_prompt=True), include_prompt=True)
    assert row["prompt"] == MESSAGES and row["answer"] == f"{MARKER} is a cat"
    assert row["tokens"] == [[MARKER, MARKER, "x"], ["!"]]


def test_the_prompt_hash_is_the_audit_logs_even_beyond_orjson():
    huge = [{"role": "user", "content": "n", "metadata": {"n": 2 ** 70}}]  # orjson refuses it
    for messages in (MESSAGES, huge):
        row = row_from_frame(frame(include_prompt=False, messages=messages), False)
        assert row["prompt_sha256"] == prompt_sha256(messages)
