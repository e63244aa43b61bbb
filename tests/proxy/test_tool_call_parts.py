"""The pure parts of proxy/chat/tool_calls.py: streamed calls reassembled, replacements
that would break a tool call or a structured output withheld, structured abstentions."""

from proxy.chat.gate_session import Answer, GateOutcome
from proxy.chat.shaping import StreamAccumulator
from proxy.chat.tool_calls import fits_format, settle

SCHEMA = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
    "additionalProperties": False}}}


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_parallel_streamed_calls_are_reassembled_by_index():
    acc = StreamAccumulator()
    acc.add(chunk({"role": "assistant", "content": None}))
    acc.add(chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]}))
    acc.add(chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                   "function": {"name": "get_time", "arguments": "{}"}}]}))
    acc.add(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}))
    acc.add(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}))
    acc.add(chunk({}, "tool_calls"))
    (answer,) = acc.answers()
    assert answer.text == "" and answer.finish_reason == "tool_calls"
    assert answer.tool_calls == [
        {"id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time",
                                                          "arguments": "{}"}}]


def test_a_text_answer_has_no_tool_calls():
    acc = StreamAccumulator()
    acc.add(chunk({"content": "Paris."}, "stop"))
    assert acc.answers()[0].tool_calls is None


def test_fits_format_follows_the_response_format():
    assert fits_format("any text", None) and fits_format("x", {"type": "text"})
    assert fits_format('{"a": 1}', {"type": "json_object"})
    assert not fits_format("[1]", {"type": "json_object"})
    assert not fits_format("Paris is the capital.", {"type": "json_object"})
    assert fits_format('{"city": "Paris"}', SCHEMA)
    assert not fits_format('{"town": "Paris"}', SCHEMA)
    assert not fits_format('{"city": 3}', SCHEMA)


def replacing(text: str) -> GateOutcome:
    return GateOutcome(replacement=text, metadata={"decision": "answer"})


def test_a_replacement_never_lands_on_an_answer_with_tool_calls():
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    out = settle(replacing("The answer is 42."), [Answer(0, "", None, tool_calls=calls)],
                 None)
    assert out.replacement is None
    assert out.metadata["replacement"] == "withheld: the answer calls tools"


def test_a_replacement_that_breaks_the_schema_is_withheld_and_one_that_fits_is_kept():
    answers = [Answer(0, '{"city": "Lyon"}', None)]
    assert settle(replacing("Paris."), answers, SCHEMA).replacement is None
    assert settle(replacing('{"city": "Paris"}'), answers, SCHEMA).replacement == \
        '{"city": "Paris"}'
    assert settle(replacing("Paris."), [Answer(0, "Lyon.", None)], None).replacement == \
        "Paris."


def test_an_abstention_on_a_structured_request_is_a_refusal_alone():
    abstain = GateOutcome(abstain=True, replacement="No.")
    assert settle(abstain, [], SCHEMA).refusal_only
    assert settle(abstain, [], {"type": "json_object"}).refusal_only
    assert not settle(abstain, [], None).refusal_only


def test_null_content_goes_upstream_as_null_or_as_an_empty_string():
    from proxy.chat.schemas import ChatCompletionRequest

    messages = [{"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c", "type": "function",
                     "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "21 C"}]
    req = ChatCompletionRequest.parse({"model": "m", "messages": messages})
    assert req.upstream_body()["messages"] == messages  # OpenAI takes null
    sent = req.upstream_body(null_content="empty")["messages"]
    assert sent[1]["content"] == "" and sent[1]["tool_calls"] == messages[1]["tool_calls"]
    assert sent[0] is messages[0] and messages[1]["content"] is None  # the client's intact
