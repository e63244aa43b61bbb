"""The pure pieces of the Responses translation: chat dicts in, Responses objects out."""

from __future__ import annotations

import pytest

from proxy.errors import InvalidRequest
from proxy.responses import shaping
from proxy.responses.events import ResponseStream, chat_chunks
from proxy.responses.schemas import ResponsesRequest


def request(**fields) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": "q", **fields})


def chat(content="Paris.", finish="stop", refusal=None, logprobs=None) -> dict:
    message = {"role": "assistant", "content": content}
    if refusal:
        message["refusal"] = refusal
    return {"created": 1, "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                                       "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def test_a_length_stop_is_an_incomplete_response():
    resp = shaping.response_object(request(max_output_tokens=2), chat(finish="length"))
    assert resp["status"] == "incomplete"
    assert resp["incomplete_details"] == {"reason": "max_output_tokens"}
    assert resp["output"][0]["status"] == "incomplete" and "completed_at" not in resp


def test_a_refusal_replaces_the_text_part():
    resp = shaping.response_object(request(), chat(content="No.", refusal="No."))
    assert resp["output"][0]["content"] == [{"type": "refusal", "refusal": "No."}]
    assert resp["usage"]["input_tokens"] == 3 and resp["usage"]["output_tokens"] == 2


def test_logprobs_bytes_are_filled_when_the_upstream_sent_none():
    content = [{"token": "é", "logprob": -0.1, "bytes": None,
                "top_logprobs": [{"token": "é", "logprob": -0.1}]}]
    (token,) = shaping.output_logprobs(content)
    assert token["bytes"] == [195, 169] and token["top_logprobs"][0]["bytes"] == [195, 169]


def test_developer_and_instructions_become_system_messages():
    req = request(instructions="Be brief.", input=[{"role": "developer", "content": "x"}])
    assert req.to_chat().messages[0].content == "Be brief."
    assert [m.role for m in req.to_chat().messages] == ["system", "system"]


def test_an_empty_input_list_is_a_400():
    with pytest.raises(InvalidRequest) as exc:
        request(input=[]).to_chat()
    assert exc.value.param == "input"


async def test_chat_sse_is_parsed_across_arbitrary_byte_boundaries():
    wire = b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\ndata: {"c":3}\n\n'

    async def pieces():
        for i in range(0, len(wire), 7):
            yield wire[i:i + 7]

    assert [c async for c in chat_chunks(pieces())] == [{"a": 1}, {"b": 2}]


def test_an_empty_stream_still_yields_one_empty_message():
    stream = ResponseStream(request())
    events = [*stream.start(), *stream.close()]
    assert [e["type"] for e in events][-3:] == ["response.content_part.done",
                                               "response.output_item.done",
                                               "response.completed"]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == ""
