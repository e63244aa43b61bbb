"""Policies in the gateway, against the fake upstream: abstaining the OpenAI way,
annotate/shadow actions, streaming modes, fail modes, overrides, hard rule, audit, reload."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.conftest import fake_settings

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
ABSTAIN_TEXT = "I won't guess on this one."

POLICY = f"""
version: 1
routes:
  - {{name: strict, match: {{header: strict}}, profile: always-abstain}}
  - {{name: annotate, match: {{header: annotate}}, profile: annotate-abstain}}
  - {{name: shadow, match: {{header: shadow}}, profile: shadow-abstain}}
  - {{name: live, match: {{header: live}}, profile: passthrough-abstain}}
  - {{name: closed, match: {{header: closed}}, profile: never-abstain}}
  - {{name: open, match: {{header: open}}, profile: fail-open}}
  - {{name: tunable, match: {{header: tunable}}, profile: tunable}}
  - {{name: code, match: {{header: code}}, profile: code-creative}}
  - {{name: forward, match: {{header: forward}}, profile: detectors-off}}
  - {{name: default, default: true, profile: never-abstain}}
profiles:
  always-abstain:
    detectors: {{halt: {{enabled: true, threshold: 0.0}}}}
    abstention_text: "{ABSTAIN_TEXT}"
  never-abstain:
    detectors: {{halt: {{enabled: true, threshold: 1.0}}}}
    fail_mode: closed
  fail-open:
    extends: never-abstain
    fail_mode: open
  annotate-abstain:
    extends: always-abstain
    action: annotate
  shadow-abstain:
    extends: always-abstain
    action: shadow
  passthrough-abstain:
    extends: always-abstain
    streaming: passthrough
  tunable:
    extends: never-abstain
    allow_overrides: [halt.threshold]
  detectors-off:
    detectors: {{halt: {{enabled: false}}, edfl: {{enabled: false}}, semantic: {{enabled: false}}}}
    action: shadow
"""


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def audit_file(tmp_path):
    return tmp_path / "audit" / "audit.jsonl"


@pytest.fixture
def gated(fake_upstream, start_gateway, policy_file, audit_file) -> str:
    settings = fake_settings(fake_upstream, policy_file=str(policy_file),
                             audit={"path": str(audit_file)})
    return start_gateway(settings)


def client_for(url: str, route: str | None = None, **headers: str) -> openai.OpenAI:
    if route:
        headers["x-hallgate-route"] = route
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0,
                         default_headers=headers)


def test_strict_route_abstains_the_openai_way(gated):
    raw = client_for(gated, "strict").chat.completions.with_raw_response.create(
        model="fake", messages=QUESTION, logprobs=True, top_logprobs=2)
    resp = raw.parse()
    choice = resp.choices[0]
    assert raw.http_response.status_code == 200 and resp.object == "chat.completion"
    assert choice.message.content == ABSTAIN_TEXT and choice.message.refusal == ABSTAIN_TEXT
    assert choice.finish_reason == "stop" and choice.logprobs is None
    meta = resp.model_extra["hallgate"]
    assert meta["decision"] == "abstain" and meta["returned"] == "abstain"
    assert meta["route"] == "strict" and meta["profile"] == "always-abstain"
    assert meta["detectors"]["halt"]["status"] == "ok"
    assert 0.0 <= meta["detectors"]["halt"]["risk"] <= 1.0
    headers = raw.http_response.headers
    assert headers["x-hallgate-decision"] == "abstain"
    assert headers["x-hallgate-route"] == "strict"
    assert headers["x-hallgate-profile"] == "always-abstain"


def test_passing_answer_carries_the_decision_too(gated):
    raw = client_for(gated).chat.completions.with_raw_response.create(model="fake",
                                                                      messages=QUESTION)
    resp = raw.parse()
    assert resp.choices[0].message.content == "Paris is the capital of France."
    assert resp.model_extra["hallgate"]["decision"] == "answer"
    assert raw.http_response.headers["x-hallgate-route"] == "default"


def test_annotate_returns_the_answer_with_the_would_be_decision(gated):
    raw = client_for(gated, "annotate").chat.completions.with_raw_response.create(
        model="fake", messages=QUESTION)
    resp = raw.parse()
    assert resp.choices[0].message.content == "Paris is the capital of France."
    meta = resp.model_extra["hallgate"]
    assert meta["decision"] == "abstain" and meta["returned"] == "answer"
    # one meaning of "decision": the header says what the body says
    headers = raw.http_response.headers
    assert headers["x-hallgate-decision"] == "abstain"
    assert headers["x-hallgate-returned"] == "answer"


def test_shadow_never_blocks_and_logs_only(gated, audit_file):
    raw = client_for(gated, "shadow").chat.completions.with_raw_response.create(
        model="fake", messages=QUESTION)
    resp = raw.parse()
    assert resp.choices[0].message.content == "Paris is the capital of France."
    assert "hallgate" not in (resp.model_extra or {})
    headers = raw.http_response.headers
    assert headers["x-hallgate-returned"] == "answer"  # the judgement is only logged:
    assert "x-hallgate-decision" not in headers and "x-hallgate-risk" not in headers
    records = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert records[-1]["route"] == "shadow" and records[-1]["decision"] == "abstain"
    assert records[-1]["returned"] == "answer"


def test_buffered_stream_abstains_with_the_refusal(gated):
    chunks = list(client_for(gated, "strict").chat.completions.create(
        model="fake", messages=QUESTION, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ABSTAIN_TEXT
    assert chunks[-1].model_extra["hallgate"]["decision"] == "abstain"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop"


def test_passthrough_stream_sends_the_answer_then_the_verdict(gated):
    chunks = list(client_for(gated, "live").chat.completions.create(
        model="fake", messages=QUESTION, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris is the capital of France."
    verdict = chunks[-1]
    assert verdict.choices == [] and verdict.model_extra["hallgate"]["decision"] == "abstain"


@pytest.mark.parametrize("route, expected", [("closed", "abstain"), ("open", "answer")])
def test_missing_logprobs_follow_the_fail_mode(gated, fake_upstream, route, expected):
    fake_upstream.script.no_logprobs = True
    resp = client_for(gated, route).chat.completions.create(model="fake", messages=QUESTION)
    meta = resp.model_extra["hallgate"]
    assert meta["decision"] == expected
    assert meta["detectors"]["halt"]["status"] == "missing_logprobs"


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_a_route_with_every_detector_off_asks_the_upstream_only_what_the_client_asked(
        gated, fake_upstream, stream):
    client = client_for(gated, "forward")
    kinds = [{}, {"logprobs": True, "top_logprobs": 2}]
    for asked in kinds:
        resp = client.chat.completions.create(model="fake", messages=QUESTION, stream=stream,
                                              **asked)
        if stream:
            chunks = [c for c in resp if c.choices]
            text = "".join(c.choices[0].delta.content or "" for c in chunks)
            tops = [t for c in chunks if c.choices[0].logprobs
                    for t in c.choices[0].logprobs.content or ()]
        else:
            text = resp.choices[0].message.content
            tops = resp.choices[0].logprobs.content if resp.choices[0].logprobs else []
        assert text == "Paris is the capital of France."
        assert all(len(t.top_logprobs) == 2 for t in tops) and bool(tops) == bool(asked)
    plain, with_logprobs = fake_upstream.requests[-2:]
    assert "logprobs" not in plain and "top_logprobs" not in plain
    assert with_logprobs["logprobs"] is True and with_logprobs["top_logprobs"] == 2
    client_for(gated, "annotate").chat.completions.create(model="fake", messages=QUESTION)
    assert fake_upstream.requests[-1]["top_logprobs"] == 20  # HALT reads them


def test_a_route_with_every_detector_off_streams_as_the_upstream_generates(gated,
                                                                          fake_upstream):
    """Nothing judges such an answer, so its profile's `buffer` mode does not hold it back:
    the first words reach the client while the upstream is still generating."""
    fake_upstream.script.token_delay_s = 0.05
    raw = client_for(gated, "forward").chat.completions.with_raw_response.create(
        model="fake", messages=QUESTION, stream=True)
    assert raw.http_response.headers["x-hallgate-decision"] == "answer"
    stream = raw.parse()
    first = next(c for c in stream if c.choices and c.choices[0].delta.content)
    sent_then, total = fake_upstream.streams[-1].sent, fake_upstream.streams[-1].total
    rest = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert sent_then < total  # forwarded before the upstream finished
    assert first.choices[0].delta.content + rest == "Paris is the capital of France."


def test_header_overrides_are_refused_unless_allowed(gated):
    with pytest.raises(openai.BadRequestError) as exc:
        client_for(gated, "closed", **{"x-hallgate-halt-threshold": "0"}).chat.completions\
            .create(model="fake", messages=QUESTION)
    assert exc.value.body["code"] == "override_refused"
    tuned = client_for(gated, "tunable", **{"x-hallgate-halt-threshold": "0"})
    resp = tuned.chat.completions.create(model="fake", messages=QUESTION)
    assert resp.model_extra["hallgate"]["decision"] == "abstain"


def test_hard_rule_escalates_a_creative_prompt_with_a_real_person_and_a_year(gated,
                                                                           audit_file):
    prompt = [{"role": "user", "content": "Write a short poem about what Barack Obama "
                                          "did in 2009."}]
    resp = client_for(gated, "code").chat.completions.create(model="fake", messages=prompt)
    meta = resp.model_extra["hallgate"]
    assert meta["escalated_by_hard_rule"] is True
    assert meta["escalated_from"] == "code-creative" and meta["profile"] == "strict-factual"
    assert "edfl" in meta["detectors"]
    usage = json.loads(audit_file.read_text().splitlines()[-1])["usage"]
    assert usage["gate_calls"] >= 2 and usage["gate_completion_tokens"] >= 1  # EDFL's calls


def test_audit_record_has_scores_and_a_prompt_hash_not_the_prompt(gated, audit_file):
    client_for(gated, "strict").chat.completions.create(model="fake", messages=QUESTION)
    record = json.loads(audit_file.read_text().splitlines()[-1])
    assert record["decision"] == "abstain" and record["profile"] == "always-abstain"
    assert len(record["prompt_sha256"]) == 64 and "prompt" not in record
    assert "capital" not in audit_file.read_text()
    assert record["scores"]["halt"]["status"] == "ok"
    assert record["usage"] == {"gate_calls": 0, "gate_prompt_tokens": 0,
                               "gate_completion_tokens": 0}  # HALT makes no upstream call


def test_policy_file_change_is_picked_up_and_a_bad_one_is_ignored(gated, policy_file):
    client = client_for(gated)
    assert client.chat.completions.create(model="fake", messages=QUESTION)\
        .model_extra["hallgate"]["decision"] == "answer"
    policy_file.write_text(POLICY.replace("profile: never-abstain}}\nprofiles",
                                          "profile: always-abstain}}\nprofiles"
                                          ).replace("default: true, profile: never-abstain",
                                                    "default: true, profile: always-abstain"))
    assert _eventually(lambda: client.chat.completions.create(
        model="fake", messages=QUESTION).model_extra["hallgate"]["decision"] == "abstain")
    policy_file.write_text(POLICY + "\n  broken: {unknown_knob: 1}\n")
    time.sleep(2.5)  # two polls of the watcher
    assert client.chat.completions.create(model="fake", messages=QUESTION)\
        .model_extra["hallgate"]["decision"] == "abstain"  # the last good policy stays


# uvicorn ends its server thread with SystemExit when the start fails: that is the point
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_bad_policy_file_stops_the_start_with_file_line_and_key(
        fake_upstream, start_gateway, tmp_path, capfd):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nroutes:\n  - name: d\n    default: true\n    profile: x\n"
                   "    colour: blue\n")
    with pytest.raises(RuntimeError):
        start_gateway(fake_settings(fake_upstream, policy_file=str(bad)))
    logged = capfd.readouterr().err  # uvicorn logs the failed start to stderr
    assert f"{bad}:6" in logged and "colour" in logged


def _eventually(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_metrics_count_decisions_and_detector_latency(gated):
    client_for(gated, "strict").chat.completions.create(model="fake", messages=QUESTION)
    text = httpx.get(f"{gated}/metrics").text
    assert 'hallgate_decisions_total{outcome="abstain",profile="always-abstain"} 1.0' in text
    assert 'hallgate_detector_seconds_count{detector="halt"} 1.0' in text
    assert ('hallgate_requests_total{profile="always-abstain",route="strict",status="2xx"} 1.0'
            in text)
