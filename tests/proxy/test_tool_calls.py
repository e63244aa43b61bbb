"""Tool calls through the gate, with the official SDK against the fake upstream.

The upstream answers the OpenAI way (``content: null``, ``tool_calls``, ``finish_reason:
"tool_calls"``, no logprobs for the calls). On every route of the default policy
(policies/examples/default.yaml) the client gets the calls back unaltered, in every
streaming mode; a profile may judge them or refuse them instead.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import fake_settings

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object",
                                       "properties": {"city": {"type": "string"}}}}}
PARIS = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
ROME_TIME = {"name": "get_time", "arguments": '{"city": "Rome, Italy"}'}
ROUTES = {"annotate": "", "strict": "/strict", "code": "/code"}  # the default policy's


def client_at(url: str, prefix: str = "", **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}{prefix}/v1", api_key="x", max_retries=0,
                         default_headers=headers)


def collect(stream) -> tuple[str | None, list[dict], str | None, dict | None]:
    """(content, tool calls, finish reason, hallgate) of choice 0 of a streamed answer."""
    content, calls, finish, meta = None, {}, None, None
    for chunk in stream:
        if (chunk.model_extra or {}).get("hallgate"):
            meta = chunk.model_extra["hallgate"]
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                content = (content or "") + delta.content
            for piece in delta.tool_calls or ():
                call = calls.setdefault(piece.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = piece.id or call["id"]
                if piece.function and piece.function.name:
                    call["name"] += piece.function.name
                if piece.function and piece.function.arguments:
                    call["arguments"] += piece.function.arguments
            finish = choice.finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish, meta


def ask(client: openai.OpenAI, stream: bool, tools=(WEATHER,), **kw):
    """(content, calls, finish reason, hallgate, headers) of one request."""
    raw = client.chat.completions.with_raw_response.create(
        model="fake", messages=QUESTION, tools=list(tools), stream=stream, **kw)
    if stream:
        return (*collect(raw.parse()), raw.http_response.headers)
    resp = raw.parse()
    message = resp.choices[0].message
    calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
             for c in message.tool_calls or ()]
    return (message.content, calls, resp.choices[0].finish_reason,
            (resp.model_extra or {}).get("hallgate"), raw.http_response.headers)


def expected(*calls: dict) -> list[dict]:
    return [{"id": f"call_{i}", **c} for i, c in enumerate(calls)]


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_a_tool_call_comes_back_unaltered_on_every_route_of_the_default_policy(
        gateway, fake_upstream, route, stream):
    fake_upstream.script.tool_calls = (PARIS,)
    content, calls, finish, meta, headers = ask(client_at(gateway, ROUTES[route]), stream)
    assert content is None
    assert calls == expected(PARIS) and finish == "tool_calls"
    assert headers["x-hallgate-decision"] == "answer" and headers["x-hallgate-route"] == (
        "default" if route == "annotate" else route)
    assert meta["decision"] == "answer" and meta["detectors"] == {}
    assert "passed unjudged" in meta["reasons"][0] and "get_weather" in meta["reasons"][0]


@pytest.mark.parametrize("mode", ["passthrough", "progressive"])
def test_streamed_tool_calls_pass_in_passthrough_and_progressive_modes(gateway, fake_upstream,
                                                                       mode):
    """The default route lets a request choose its streaming mode; progressive holds the
    call deltas until the upstream has finished and the answer is judged (passed)."""
    fake_upstream.script.tool_calls = (PARIS, ROME_TIME)
    client = client_at(gateway, **{"x-hallgate-streaming": mode})
    content, calls, finish, meta, _ = ask(client, True, tools=(WEATHER, TIME))
    assert content is None and finish == "tool_calls"
    assert calls == expected(PARIS, ROME_TIME)
    assert meta["decision"] == "answer" and "passed unjudged" in meta["reasons"][0]


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_parallel_tool_calls_are_returned_in_order(gateway, fake_upstream, stream):
    fake_upstream.script.tool_calls = (PARIS, ROME_TIME)
    fake_upstream.script.tool_text = "Let me check both."
    content, calls, finish, meta, _ = ask(client_at(gateway, "/strict"), stream,
                                          tools=(WEATHER, TIME))
    assert content == "Let me check both." and finish == "tool_calls"
    assert calls == expected(PARIS, ROME_TIME)
    assert json.loads(calls[1]["arguments"]) == {"city": "Rome, Italy"}



@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_a_forced_tool_call_on_a_passing_route_costs_one_upstream_call(gateway,
                                                                        fake_upstream, stream):
    """strict runs EDFL and the semantic gate, which sample the upstream at prompt time;
    with ``tool_choice: required`` and ``tool_calls: pass`` their verdict would never be
    read, so only the answer is asked for."""
    fake_upstream.script.tool_calls = (PARIS,)
    fake_upstream.script.latency_s = 0.2  # time for prompt-time samples to be sent
    content, calls, finish, meta, _ = ask(client_at(gateway, "/strict"), stream,
                                          tool_choice="required")
    assert calls == expected(PARIS) and "passed unjudged" in meta["reasons"][0]
    assert len(fake_upstream.requests) == 1
    fake_upstream.reset()
    fake_upstream.script.tool_calls = (PARIS,)
    fake_upstream.script.latency_s = 0.2
    ask(client_at(gateway, "/strict"), stream, tool_choice="auto")  # may answer in text
    assert len(fake_upstream.requests) > 1  # so the gates sampled at prompt time


def test_an_upstream_that_ignores_a_forced_tool_call_is_judged_in_full(gateway,
                                                                       fake_upstream):
    """The detectors deferred for a forced call start when the answer is text after all."""
    content, calls, _, meta, _ = ask(client_at(gateway, "/strict"), False,
                                     tool_choice="required")
    assert calls == [] and content
    assert len(fake_upstream.requests) > 1  # EDFL's skeletons, sent late
    *_, unforced, _ = ask(client_at(gateway, "/strict"), False)
    assert "edfl" in meta["detectors"]
    assert set(meta["detectors"]) == set(unforced["detectors"])

POLICY = """
version: 1
routes:
  - {name: no-tools, match: {header: no-tools}, profile: no-tools}
  - {name: judged, match: {header: judged}, profile: judged-code}
  - {name: default, default: true, profile: strict-factual}
profiles:
  no-tools:
    extends: strict-factual
    tool_calls: abstain
    abstention_text: "No tools on this route."
  judged-code:
    extends: code-creative
    tool_calls: judge
"""


@pytest.fixture
def tool_policy(fake_upstream, start_gateway, tmp_path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(path)))


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_a_profile_that_abstains_on_tool_calls_refuses_them(tool_policy, fake_upstream,
                                                            stream):
    fake_upstream.script.tool_calls = (PARIS,)
    content, calls, finish, meta, headers = ask(
        client_at(tool_policy, **{"x-hallgate-route": "no-tools"}), stream)
    assert content == "No tools on this route." and calls == [] and finish == "stop"
    assert meta["decision"] == "abstain" and "refused" in meta["reasons"][0]
    assert headers["x-hallgate-decision"] == "abstain"


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_judged_tool_calls_never_get_a_sampled_answer_grafted_on(tool_policy, fake_upstream,
                                                                 stream):
    """code-creative's semantic gate samples text answers ("Paris is the capital of
    France."); its chosen-answer replacement must not land beside the calls."""
    fake_upstream.script.tool_calls = (PARIS,)
    content, calls, finish, meta, _ = ask(
        client_at(tool_policy, **{"x-hallgate-route": "judged"}), stream)
    assert content is None and calls == expected(PARIS) and finish == "tool_calls"
    assert meta["reasons"][0].startswith("tool calls (get_weather): judged nothing but")
    assert "semantic" in meta["detectors"]  # it was judged, not passed


def test_a_request_with_tools_answered_in_text_is_judged_as_text(gateway, fake_upstream):
    """Offering tools changes nothing when the model answers in words: HALT judges it."""
    content, calls, finish, meta, _ = ask(client_at(gateway), False)
    assert content == "Paris is the capital of France." and calls == []
    assert meta["detectors"]["halt"]["status"] == "ok" and finish == "stop"


# --- multi-turn tool use ----------------------------------------------------------------

RESULT = '{"city": "Paris", "temp_c": 21, "sky": "clear"}'
FINAL = "It is 21 degrees and clear in Paris."


def run_agent(client: openai.OpenAI, question: list[dict], result: str = RESULT, **kw):
    """The two turns of a tool-using agent: the model calls the tool, the client runs it
    and sends its result back, the model answers. Returns both responses."""
    first = client.chat.completions.create(model="fake", messages=question, tools=[WEATHER],
                                           **kw)
    call = first.choices[0].message.tool_calls[0]
    history = [*question, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": result}]
    assert history[-2]["tool_calls"][0]["id"] == "call_0" and "content" not in history[-2]
    history[-2]["content"] = None  # as the SDKs send it back
    second = client.chat.completions.create(model="fake", messages=history, tools=[WEATHER],
                                            **kw)
    return first, second


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_two_turn_agent_exchange_judges_the_final_answer(gateway, fake_upstream, route):
    fake_upstream.script.tool_calls = (PARIS,)
    fake_upstream.script.text = FINAL
    first, second = run_agent(client_at(gateway, ROUTES[route]), QUESTION)
    assert first.choices[0].finish_reason == "tool_calls"
    meta = second.model_extra["hallgate"]
    assert "passed unjudged" not in " ".join(meta["reasons"])  # a text answer: judged
    enabled = {"annotate": "halt", "strict": "edfl", "code": "semantic"}[route]
    assert meta["detectors"][enabled]["status"] == "ok"
    assert second.choices[0].message.tool_calls is None
    if route != "strict":  # strict-factual may abstain on the fake's answer; others return
        assert second.choices[0].message.content == FINAL
    sent = fake_upstream.requests
    answer_call = next(r for r in sent
                       if r.get("tools") and r["messages"][-1]["role"] == "tool")
    assert answer_call["messages"][-2]["content"] is None  # forwarded as the client sent it


def test_edfl_skeletons_erase_the_tool_result_and_keep_the_question(gateway, fake_upstream):
    fake_upstream.script.tool_calls = (PARIS,)
    fake_upstream.script.text = FINAL
    run_agent(client_at(gateway, "/strict"), QUESTION)
    prompts = [r["messages"][-1]["content"] for r in fake_upstream.requests
               if not r.get("tools") and "[tool result]" in r["messages"][-1]["content"]]
    full = [p for p in prompts if RESULT in p]
    skeletons = [p for p in prompts if RESULT not in p]
    assert len(full) >= 1 and len(skeletons) >= 1
    assert all("[tool result]\n[MASK]" in p and "(called get_weather(" in p for p in skeletons)


def test_a_tool_result_naming_entities_and_numbers_does_not_trip_the_hard_rule(
        gateway, fake_upstream):
    """The hard rule reads the user's words: a tool result with 'Carlos Santana' and
    '1985' in it is evidence, so the code route keeps code-creative."""
    fake_upstream.script.tool_calls = (PARIS,)
    question = [{"role": "user", "content": "Write a python function that formats it."}]
    _, second = run_agent(client_at(gateway, "/code"), question,
                          result="Carlos Santana met Miles Davis in New York in 1985.")
    meta = second.model_extra["hallgate"]
    assert meta["escalated_by_hard_rule"] is False and meta["profile"] == "code-creative-local"
