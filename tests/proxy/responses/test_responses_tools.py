"""Function tools in the Responses API, with the official SDK against the fake upstream:
calls as `function_call` output items (streamed as function-call events), results sent
back as `function_call_output` items, structured outputs through `responses.parse`."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

QUESTION = "What is the weather in Paris?"
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"], "additionalProperties": False},
           "strict": True}
PARIS = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
ROME = {"name": "get_weather", "arguments": '{"city": "Rome"}'}
RESULT = '{"temp_c": 21, "sky": "clear"}'
FINAL = "It is 21 degrees and clear in Paris."
ROUTES = {"annotate": "", "strict": "/strict", "code": "/code"}


class Weather(BaseModel):
    city: str
    temp_c: int


def client_at(url: str, prefix: str = "") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}{prefix}/v1", api_key="x", max_retries=0)


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_function_call_is_an_output_item_on_every_route(gateway, fake_upstream, route):
    fake_upstream.script.tool_calls = (PARIS, ROME)
    resp = client_at(gateway, ROUTES[route]).responses.create(
        model="fake", input=QUESTION, tools=[WEATHER], tool_choice="auto",
        parallel_tool_calls=True)
    assert [o.type for o in resp.output] == ["function_call", "function_call"]
    assert [(o.call_id, o.name, o.arguments) for o in resp.output] == [
        ("call_0", "get_weather", '{"city": "Paris"}'),
        ("call_1", "get_weather", '{"city": "Rome"}')]
    assert resp.status == "completed" and resp.output_text == ""
    assert "passed unjudged" in resp.model_extra["hallgate"]["reasons"][0]
    sent = next(r for r in fake_upstream.requests if r.get("tools"))
    assert sent["tools"] == [{"type": "function", "function": {
        k: WEATHER[k] for k in ("name", "description", "parameters", "strict")}}]
    assert sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is True


def test_a_named_tool_choice_is_sent_in_chat_form(client, fake_upstream):
    fake_upstream.script.tool_calls = (PARIS,)
    client.responses.create(model="fake", input=QUESTION, tools=[WEATHER],
                            tool_choice={"type": "function", "name": "get_weather"})
    assert fake_upstream.requests[-1]["tool_choice"] == {
        "type": "function", "function": {"name": "get_weather"}}


def test_streamed_function_calls_emit_the_function_call_events(client, fake_upstream):
    fake_upstream.script.tool_calls = (PARIS, ROME)
    events = list(client.responses.create(model="fake", input=QUESTION, tools=[WEATHER],
                                          stream=True))
    kinds = [e.type for e in events]

    def per_call(arguments: str) -> list[str]:  # the fake streams arguments 8 chars a piece
        pieces = -(-len(arguments) // 8)
        return ["response.output_item.added",
                *["response.function_call_arguments.delta"] * pieces,
                "response.function_call_arguments.done", "response.output_item.done"]

    assert kinds == ["response.created", "response.in_progress", *per_call(PARIS["arguments"]),
                     *per_call(ROME["arguments"]), "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [(d.output_index, d.arguments) for d in done] == [
        (0, '{"city": "Paris"}'), (1, '{"city": "Rome"}')]
    deltas = "".join(e.delta for e in events if e.type.endswith("arguments.delta"))
    assert deltas == '{"city": "Paris"}{"city": "Rome"}'
    final = events[-1].response
    assert [(o.call_id, o.arguments) for o in final.output] == [
        ("call_0", '{"city": "Paris"}'), ("call_1", '{"city": "Rome"}')]


def test_the_sdk_stream_helper_accumulates_function_calls(client, fake_upstream):
    fake_upstream.script.tool_calls = (PARIS,)
    fake_upstream.script.tool_text = "Checking."
    with client.responses.stream(model="fake", input=QUESTION, tools=[WEATHER]) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert [o.type for o in final.output] == ["message", "function_call"]
    assert final.output_text == "Checking."
    assert final.output[1].arguments == '{"city": "Paris"}'


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_function_call_output_items_become_tool_messages_and_the_answer_is_judged(
        client, fake_upstream, stream):
    fake_upstream.script.tool_calls = (PARIS,)
    fake_upstream.script.text = FINAL
    first = client.responses.create(model="fake", input=QUESTION, tools=[WEATHER])
    call = first.output[0]
    history = [{"role": "user", "content": QUESTION},
               call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": RESULT}]
    second = client.responses.create(model="fake", input=history, tools=[WEATHER],
                                     stream=stream)
    if stream:
        second = [e for e in second][-1].response
    assert second.output_text == FINAL
    meta = second.model_extra["hallgate"]
    assert meta["detectors"]["halt"]["status"] == "ok"
    sent = fake_upstream.requests[-1]["messages"]
    assert sent == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_0", "type": "function", "function": PARIS}]},
        {"role": "tool", "tool_call_id": "call_0", "content": RESULT}]


@pytest.mark.parametrize("route", list(ROUTES))
def test_responses_parse_works_on_every_route(gateway, fake_upstream, route):
    fake_upstream.script.structured = '{"city": "Paris", "temp_c": 21}'
    resp = client_at(gateway, ROUTES[route]).responses.parse(
        model="fake", input=QUESTION, text_format=Weather)
    sent = next(r for r in fake_upstream.requests if r.get("response_format"))
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "Weather"
    part = resp.output[0].content[0]
    if route == "strict":  # strict-factual abstains on the fake's answer
        assert part.type == "refusal" and resp.output_parsed is None
    else:
        assert resp.output_parsed == Weather(city="Paris", temp_c=21)
        assert json.loads(resp.output_text) == {"city": "Paris", "temp_c": 21}


def test_a_json_object_text_format_is_a_chat_json_object(client, fake_upstream):
    fake_upstream.script.structured = '{"ok": true}'
    resp = client.responses.create(model="fake", input=QUESTION,
                                   text={"format": {"type": "json_object"}})
    assert resp.output_text == '{"ok": true}'
    assert fake_upstream.requests[-1]["response_format"] == {"type": "json_object"}
