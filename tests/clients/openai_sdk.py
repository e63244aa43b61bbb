"""The official openai SDK through hallgate: chat, streaming, tools, parse, Responses."""

from __future__ import annotations

import json

import openai
from _checks import FINAL, STRUCTURED, Checks, expect
from pydantic import BaseModel

checks = Checks("openai (Python SDK)", "openai")
client = openai.OpenAI(base_url=checks.base_url, api_key="x", max_retries=0)
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


class Weather(BaseModel):
    city: str
    temp_c: int


def chat():
    resp = client.chat.completions.create(model="fake", messages=ASK)
    expect(resp.choices[0].message.content == FINAL, resp.choices[0].message.content)
    expect("hallgate" in resp.model_extra, "no hallgate object")
    meta = resp.model_extra["hallgate"]
    return f"hallgate: decision {meta['decision']}, returned {meta['returned']}"


def chat_stream():
    chunks = list(client.chat.completions.create(model="fake", messages=ASK, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expect(text == FINAL, text)


def tools():
    resp = client.chat.completions.create(model="fake", messages=ASK, tools=[TOOL])
    call = resp.choices[0].message.tool_calls[0]
    expect(call.function.name == "get_weather", call.function.name)
    expect(json.loads(call.function.arguments) == {"city": "Paris"}, call.function.arguments)
    history = [*ASK, resp.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "21 C, clear"}]
    final = client.chat.completions.create(model="fake", messages=history, tools=[TOOL])
    expect(final.choices[0].message.content == FINAL, final.choices[0].message.content)


def tools_stream():
    args = ""
    for chunk in client.chat.completions.create(model="fake", messages=ASK, tools=[TOOL],
                                                stream=True):
        for choice in chunk.choices:
            for piece in choice.delta.tool_calls or ():
                args += piece.function.arguments or ""
    expect(json.loads(args) == {"city": "Paris"}, args)


def parse():
    resp = client.chat.completions.parse(model="fake", messages=ASK, response_format=Weather)
    expect(resp.choices[0].message.parsed == Weather(city="Paris", temp_c=21),
           str(resp.choices[0].message))


def parse_stream():
    with client.chat.completions.stream(model="fake", messages=ASK,
                                        response_format=Weather) as stream:
        final = stream.get_final_completion()
    expect(final.choices[0].message.parsed == Weather(city="Paris", temp_c=21),
           str(final.choices[0].message))


def responses():
    resp = client.responses.create(model="fake", input="What is the weather in Paris?")
    expect(resp.output_text == FINAL, resp.output_text)


def responses_stream():
    with client.responses.stream(model="fake", input="Weather in Paris?") as stream:
        final = stream.get_final_response()
    expect(final.output_text == FINAL, final.output_text)


def responses_tools():
    tool = {"type": "function", "name": "get_weather", "parameters": TOOL["function"][
        "parameters"]}
    resp = client.responses.create(model="fake", input="Weather in Paris?", tools=[tool])
    call = resp.output[0]
    expect(call.type == "function_call" and call.name == "get_weather", str(call))
    follow = client.responses.create(model="fake", tools=[tool], input=[
        {"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "21 C"}])
    expect(follow.output_text == FINAL, follow.output_text)


def responses_parse():
    resp = client.responses.parse(model="fake", input="Weather in Paris?", text_format=Weather)
    expect(resp.output_parsed == Weather(city="Paris", temp_c=21), resp.output_text)
    expect(resp.output_text == STRUCTURED, resp.output_text)


for name, fn in [("chat", chat), ("chat stream", chat_stream), ("tools", tools),
                 ("tools stream", tools_stream), ("chat.completions.parse", parse),
                 ("chat.completions.stream (parse)", parse_stream),
                 ("responses", responses), ("responses stream", responses_stream),
                 ("responses tools", responses_tools), ("responses.parse", responses_parse)]:
    checks.run(name, fn)
checks.exit()
