"""`streaming: progressive` through the real gateway, with the openai SDK, against the fake
upstream. Scripted logprobs make HALT's prefix risk rise mid-answer: tokens with a wide gap
to their alternatives read as confident (prefix risk about 0.1 on the shipped checkpoint),
tokens 1 nat apart as risky (about 0.95), so the threshold 0.5 separates them by far."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import fake_settings
from tests.fake_upstream import Script, _words

QUESTION = [{"role": "user", "content": "Name forty words."}]
ABSTAIN_TEXT = "I can't vouch for the rest of that answer."
TEXT = " ".join(f"w{i}" for i in range(40))
WORDS = _words(TEXT)
CONFIDENT = (-0.01, 8.0)  # (chosen logprob, gap between alternatives)
RISKY = (-0.05, 1.0)
W, K = 8, 8

POLICY = f"""
version: 1
routes:
  - {{name: live, match: {{header: live}}, profile: live}}
  - {{name: watch, match: {{header: watch}}, profile: watch}}
  - {{name: gated, match: {{header: gated}}, profile: gated}}
  - {{name: default, default: true, profile: live}}
profiles:
  live:
    detectors: {{halt: {{enabled: true, threshold: 1.0}}}}  # the whole answer passes
    streaming: progressive
    progressive: {{holdback_tokens: {W}, rescore_every: {K}, threshold: 0.5}}
    abstention_text: "{ABSTAIN_TEXT}"
  watch:
    extends: live
    action: annotate
  gated:
    extends: live
    detectors: {{edfl: {{enabled: true, m: 2, n: 2}}}}
    h_star: 0.001
"""


@pytest.fixture
def live(fake_upstream, start_gateway, tmp_path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(path)))


def script(fake, shapes, delay: float = 0.02) -> None:
    fake.script = Script(text=TEXT, token_shapes=tuple(shapes), token_delay_s=delay)


def stream(url: str, route: str, **kw):
    """(response headers, chunks) of one streamed request through the openai SDK."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0,
                           default_headers={"x-hallgate-route": route})
    raw = client.chat.completions.with_raw_response.create(
        model="fake", messages=QUESTION, stream=True, **kw)
    return raw.http_response.headers, list(raw.parse())


def split(chunks):
    """(content text, refusal text, finish reasons, the hallgate verdict, event order)."""
    content, refusal, finish, verdict, order = [], [], [], None, []
    for chunk in chunks:
        extra = chunk.model_extra or {}
        if "hallgate" in extra:
            verdict = extra["hallgate"]
            order.append("verdict")
        for choice in chunk.choices:
            if choice.delta.content:
                content.append(choice.delta.content)
                order.append("content")
            if choice.delta.refusal:
                refusal.append(choice.delta.refusal)
                order.append("refusal")
            if choice.finish_reason:
                finish.append(choice.finish_reason)
                order.append("finish")
    return "".join(content), "".join(refusal), finish, verdict, order


def wait_for_end(fake, seconds: float) -> None:
    """Give a stream that was *not* closed time to finish, so that `completed` tells."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not fake.streams[-1].completed:
        time.sleep(0.05)


def test_rising_risk_cuts_the_stream_and_closes_the_upstream(live, fake_upstream):
    script(fake_upstream, [CONFIDENT] * 16 + [RISKY] * 24)
    headers, chunks = stream(live, "live")
    content, refusal, finish, verdict, order = split(chunks)
    assert headers["x-hallgate-decision"] == "deferred"
    report = verdict["progressive"]
    released = report["released_tokens"]
    # the released prefix, exactly, then the refusal, then nothing of the answer
    assert content == "".join(WORDS[:released])
    assert refusal == ABSTAIN_TEXT and finish == ["stop"]
    assert order == ["content"] * released + ["refusal", "finish", "verdict"]
    # cut at the first check that saw risky tokens (16 confident, then risky: the check at
    # 24 still passes on the checkpoint, the one at 32 crosses), W tokens still held
    assert report["cut"] is True and report["cut_at_token"] in (24, 32)
    assert released == report["cut_at_token"] - W - 1
    assert report["reason"].startswith("halt prefix risk")
    assert verdict["decision"] == "abstain" and verdict["returned"] == "abstain"
    assert verdict["detectors"]["halt"]["risk"] >= 0.5
    # the upstream was closed at the cut: it never finished generating
    wait_for_end(fake_upstream, len(WORDS) * 0.02 + 1.0)
    record = fake_upstream.streams[-1]
    assert not record.completed and record.sent < report["cut_at_token"] + 10


def test_confident_answer_arrives_whole_with_its_verdict(live, fake_upstream):
    script(fake_upstream, [CONFIDENT] * 40, delay=0.0)
    headers, chunks = stream(live, "live", stream_options={"include_usage": True})
    content, refusal, finish, verdict, order = split(chunks)
    assert headers["x-hallgate-decision"] == "deferred"
    assert content == TEXT and refusal == "" and finish == ["stop"]
    assert order[-2:] == ["finish", "verdict"]
    assert verdict["decision"] == "answer"
    report = verdict["progressive"]
    assert report["cut"] is False and report["released_tokens"] == len(WORDS)
    assert report["checks"] == len(WORDS) // K and report["max_prefix_risk"] < 0.5
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(WORDS)
    assert fake_upstream.streams[-1].completed
    metrics = httpx.get(f"{live}/metrics").text  # one latency observation per check
    assert f'hallgate_detector_seconds_count{{detector="halt_prefix"}} {len(WORDS) // K}.0' \
        in metrics


def test_annotate_never_cuts_but_says_where_it_would_have(live, fake_upstream):
    script(fake_upstream, [CONFIDENT] * 16 + [RISKY] * 24, delay=0.0)
    _, chunks = stream(live, "watch")
    content, refusal, _, verdict, _ = split(chunks)
    assert content == TEXT and refusal == ""
    report = verdict["progressive"]
    assert report["cut"] is False and report["would_cut_at_token"] in (24, 32)


def test_edfl_abstaining_first_cancels_the_answer_before_any_token(live, fake_upstream):
    """EDFL (prompt-only) answers long before the slow answer stream has W tokens; the
    fake's answers give it no evidence, so at h* = 0.001 it abstains."""
    script(fake_upstream, [CONFIDENT] * 40, delay=0.1)
    _, chunks = stream(live, "gated")
    content, refusal, finish, verdict, order = split(chunks)
    assert verdict["detectors"]["edfl"]["verdict"] == "abstain"
    assert content == "" and refusal == ABSTAIN_TEXT and finish == ["stop"]
    assert order == ["refusal", "finish", "verdict"]
    assert chunks[0].choices[0].delta.role == "assistant"
    report = verdict["progressive"]
    assert report["cut"] is True and report["released_tokens"] == 0
    assert report["reason"].startswith("edfl abstained")
    answer_streams = [s for s in fake_upstream.streams if s.total == len(WORDS)]
    wait_for_end(fake_upstream, len(WORDS) * 0.1 + 1.0)
    assert answer_streams and not answer_streams[-1].completed


def test_edfl_answering_lets_a_confident_answer_through_whole(live, fake_upstream):
    """The fake's decision answers start with the label 'answer', so EDFL finds the prior
    sufficient and answers; the stream is then released as without EDFL."""
    text = "answer " + " ".join(f"w{i}" for i in range(1, 40))
    fake_upstream.script = Script(text=text, token_shapes=(CONFIDENT,) * 40,
                                  token_delay_s=0.01)
    _, chunks = stream(live, "gated")
    content, refusal, _, verdict, _ = split(chunks)
    assert verdict["detectors"]["edfl"]["verdict"] == "answer"
    assert content == text and refusal == "" and verdict["decision"] == "answer"
    assert verdict["progressive"]["cut"] is False


def test_without_logprobs_nothing_is_released_before_the_fail_mode_decides(live,
                                                                           fake_upstream):
    """Content without logprobs cannot be judged early: held whole; `closed` abstains."""
    fake_upstream.script = Script(text=TEXT, no_logprobs=True)
    _, chunks = stream(live, "live")
    content, refusal, finish, verdict, _ = split(chunks)
    assert content == "" and refusal == ABSTAIN_TEXT and finish == ["stop"]
    assert verdict["detectors"]["halt"]["status"] == "missing_logprobs"
    assert verdict["progressive"]["released_tokens"] == 0


def test_several_choices_are_buffered(live, fake_upstream):
    script(fake_upstream, [CONFIDENT] * 40, delay=0.0)
    headers, chunks = stream(live, "live", n=2)
    assert headers["x-hallgate-decision"] == "answer"  # buffered: decided before the body
    content, _, _, verdict, _ = split(chunks)
    assert content == TEXT + TEXT and "progressive" not in verdict


def test_a_client_that_leaves_mid_stream_closes_the_upstream(live, fake_upstream):
    script(fake_upstream, [CONFIDENT] * 40, delay=0.05)
    client = openai.OpenAI(base_url=f"{live}/v1", api_key="x", max_retries=0,
                           default_headers={"x-hallgate-route": "live"})
    events = client.chat.completions.create(model="fake", messages=QUESTION, stream=True)
    for chunk in events:
        if chunk.choices and chunk.choices[0].delta.content:
            break  # the first released token: W + 1 tokens were generated
    events.close()
    wait_for_end(fake_upstream, len(WORDS) * 0.05 + 1.0)
    record = fake_upstream.streams[-1]
    assert not record.completed and record.sent < len(WORDS)
