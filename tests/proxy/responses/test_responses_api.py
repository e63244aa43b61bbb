"""The Responses API with the official SDK against the fake upstream: translation to
chat upstream, logprobs, usage, streaming events, abstaining, unsupported fields."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import fake_settings

ANSWER = "Paris is the capital of France."
QUESTION = "What is the capital of France?"
ABSTAIN_TEXT = "I won't guess on this one."

POLICY = f"""
version: 1
routes:
  - {{name: strict, match: {{header: strict, path_prefix: /strict}}, profile: always-abstain}}
  - {{name: live, match: {{header: live}}, profile: passthrough-abstain}}
  - {{name: default, default: true, profile: never-abstain}}
profiles:
  always-abstain:
    detectors: {{halt: {{enabled: true, threshold: 0.0}}}}
    abstention_text: "{ABSTAIN_TEXT}"
  never-abstain:
    detectors: {{halt: {{enabled: true, threshold: 1.0}}}}
  passthrough-abstain:
    extends: always-abstain
    streaming: passthrough
"""


@pytest.fixture
def gated(fake_upstream, start_gateway, tmp_path) -> str:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(policy)))


def client_for(url: str, route: str | None = None, prefix: str = "") -> openai.OpenAI:
    headers = {"x-hallgate-route": route} if route else {}
    return openai.OpenAI(base_url=f"{url}{prefix}/v1", api_key="x", max_retries=0,
                         default_headers=headers)


def test_plain_text_input_is_served_through_chat_upstream(client, fake_upstream):
    resp = client.responses.create(model="fake", input=QUESTION, instructions="Be brief.",
                                   max_output_tokens=17, temperature=0.3,
                                   metadata={"ticket": "42"})
    assert resp.object == "response" and resp.status == "completed"
    assert resp.output_text == ANSWER and resp.model == "fake"
    assert resp.id.startswith("resp_") and resp.output[0].id.startswith("msg_")
    assert resp.metadata == {"ticket": "42"} and resp.instructions == "Be brief."
    assert resp.usage.input_tokens == 10 and resp.usage.output_tokens == 6
    assert resp.usage.total_tokens == 16
    assert resp.output[0].content[0].logprobs is None  # not asked for
    sent = fake_upstream.requests[-1]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": QUESTION}]
    assert sent["max_completion_tokens"] == 17 and sent["temperature"] == 0.3
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20  # HALT's input
    assert "metadata" not in sent and "input" not in sent


def test_message_items_become_chat_messages(client, fake_upstream):
    items = [{"role": "developer", "content": "Answer in one line."},
             {"type": "message", "role": "user",
              "content": [{"type": "input_text", "text": "Capital of"},
                          {"type": "input_text", "text": "France?"}]},
             {"role": "assistant", "content": [{"type": "output_text", "text": "Paris."}]},
             {"role": "user", "content": "Sure?"}]
    assert client.responses.create(model="fake", input=items).output_text == ANSWER
    assert fake_upstream.requests[-1]["messages"] == [
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "Capital of\nFrance?"},
        {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "Sure?"}]


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_logprobs_at_the_depth_the_client_asked(client, stream):
    kwargs = dict(model="fake", input=QUESTION, top_logprobs=2,
                  include=["message.output_text.logprobs"])
    if stream:
        with client.responses.stream(**kwargs) as events:
            resp = events.get_final_response()
    else:
        resp = client.responses.create(**kwargs)
    logprobs = resp.output[0].content[0].logprobs
    assert [t.token for t in logprobs] == ["Paris", " is", " the", " capital", " of",
                                           " France."]
    assert all(len(t.top_logprobs) == 2 and t.logprob == pytest.approx(-0.05)
               for t in logprobs)
    assert logprobs[0].bytes == list(b"Paris")


def test_streaming_emits_the_documented_event_sequence(client):
    events = list(client.responses.create(model="fake", input=QUESTION, stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert set(types[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == ANSWER
    done = events[-1].response
    assert done.output_text == ANSWER and done.usage.output_tokens == 6
    assert done.id == events[0].response.id and events[0].response.status == "in_progress"


def test_sdk_stream_helper_accumulates_the_final_response(client):
    with client.responses.stream(model="fake", input=QUESTION) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == ANSWER and final.output_text == ANSWER and final.status == "completed"


def test_abstention_is_a_refusal_part_with_the_decision(gated):
    raw = client_for(gated, "strict").responses.with_raw_response.create(
        model="fake", input=QUESTION, include=["message.output_text.logprobs"])
    resp = raw.parse()
    assert raw.http_response.status_code == 200 and resp.status == "completed"
    part = resp.output[0].content[0]
    assert part.type == "refusal" and part.refusal == ABSTAIN_TEXT
    assert resp.output_text == ""
    meta = resp.model_extra["hallgate"]
    assert meta["decision"] == "abstain" and meta["route"] == "strict"
    assert meta["detectors"]["halt"]["status"] == "ok"
    headers = raw.http_response.headers
    assert headers["x-hallgate-decision"] == "abstain"
    assert headers["x-hallgate-profile"] == "always-abstain"


def test_passing_answer_carries_the_decision(gated):
    raw = client_for(gated).responses.with_raw_response.create(model="fake", input=QUESTION)
    resp = raw.parse()
    assert resp.output_text == ANSWER
    assert resp.model_extra["hallgate"]["decision"] == "answer"
    assert raw.http_response.headers["x-hallgate-decision"] == "answer"


def test_streamed_abstention_sends_refusal_deltas(gated):
    events = list(client_for(gated, "strict").responses.create(model="fake", input=QUESTION,
                                                               stream=True))
    types = [e.type for e in events]
    assert "response.output_text.delta" not in types
    assert "".join(e.delta for e in events if e.type == "response.refusal.delta") \
        == ABSTAIN_TEXT
    assert types[-4:] == ["response.refusal.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    final = events[-1].response
    assert final.output[0].content[0].type == "refusal"
    assert final.model_extra["hallgate"]["decision"] == "abstain"


def test_stream_helper_parses_an_abstention(gated):
    with client_for(gated, "strict").responses.stream(model="fake", input=QUESTION) as s:
        final = s.get_final_response()
    assert final.output[0].content[0].refusal == ABSTAIN_TEXT


def test_passthrough_stream_reports_the_verdict_on_the_completed_response(gated):
    with client_for(gated, "live").responses.with_streaming_response.create(
            model="fake", input=QUESTION, stream=True) as raw:
        assert raw.headers["x-hallgate-decision"] == "deferred"
        events = list(raw.parse())
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == ANSWER  # passthrough: already sent when the verdict comes
    assert events[-1].response.model_extra["hallgate"]["decision"] == "abstain"


def test_route_prefix_in_base_url(gated):
    resp = client_for(gated, prefix="/strict").responses.create(model="fake", input=QUESTION)
    assert resp.output[0].content[0].type == "refusal"
    metrics = httpx.get(f"{gated}/metrics").text
    assert ('hallgate_requests_total{profile="always-abstain",route="strict",status="2xx"} 1.0'
            in metrics)


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "computer_use_preview", "display_width": 1, "display_height": 1,
                 "environment": "linux"}]}, "tools[0].type"),
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"background": True}, "background"),
    ({"reasoning": {"effort": "low"}}, "reasoning"),
    ({"include": ["file_search_call.results"]}, "include"),
    ({"text": {"format": {"type": "xml"}}}, "text.format"),
    ({"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]},
     "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]},
     "input[0].content[0].type"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"temperature": 3}, "temperature"),
], ids=["file_search", "web_search", "computer_use", "previous_response_id", "background",
        "reasoning", "include", "format", "item_type", "part_type", "role", "temperature"])
def test_unsupported_fields_are_a_400_naming_the_field(client, fake_upstream, extra, param):
    kwargs = {"model": "fake", "input": QUESTION, **extra}
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(**kwargs)
    assert exc.value.body["param"] == param
    assert exc.value.body["type"] == "invalid_request_error"
    if param.startswith("tools"):  # a hosted tool: the message names its type
        assert repr(extra["tools"][0]["type"]) in exc.value.body["message"]
    assert fake_upstream.requests == []


def test_neutral_values_of_unsupported_fields_pass(client):
    resp = client.responses.create(model="fake", input=QUESTION, tools=[], store=False,
                                   parallel_tool_calls=False, truncation="disabled")
    assert resp.output_text == ANSWER


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_upstream_failure_is_an_http_error(client, fake_upstream, stream):
    fake_upstream.fail_next("500", times=3)
    with pytest.raises(openai.APIStatusError) as exc:
        resp = client.responses.create(model="fake", input=QUESTION, stream=stream)
        list(resp) if stream else None
    assert exc.value.status_code == 502


def test_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input=QUESTION)


def test_stream_broken_mid_way_ends_with_error_and_failed(gated, fake_upstream):
    fake_upstream.fail_next("drop")
    with httpx.stream("POST", f"{gated}/v1/responses", headers={"x-hallgate-route": "live"},
                      json={"model": "fake", "input": QUESTION, "stream": True}) as r:
        body = r.read().decode()
    names = [e.split("\n")[0] for e in body.split("\n\n") if e]
    assert names[-2:] == ["event: error", "event: response.failed"]
