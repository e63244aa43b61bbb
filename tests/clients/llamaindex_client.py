"""LlamaIndex's OpenAI-compatible LLM (OpenAILike) through hallgate: complete, chat,
stream, a function-calling tool round trip, structured prediction."""

from __future__ import annotations

import json

from _checks import FINAL, Checks, expect, get_weather_impl
from llama_index.core.llms import ChatMessage
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai_like import OpenAILike
from pydantic import BaseModel

checks = Checks("LlamaIndex OpenAILike", "llama-index-llms-openai-like")
llm = OpenAILike(model="fake", api_base=checks.base_url, api_key="x", is_chat_model=True,
                 is_function_calling_model=True, max_retries=0, context_window=8192)


class Weather(BaseModel):
    city: str
    temp_c: int


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return get_weather_impl(city)


def complete():
    text = llm.complete("What is the weather in Paris?").text
    expect(text == FINAL, text)


def chat():
    resp = llm.chat([ChatMessage(role="user", content="What is the weather in Paris?")])
    expect(resp.message.content == FINAL, resp.message.content)


def stream_chat():
    text = "".join(r.delta or "" for r in llm.stream_chat(
        [ChatMessage(role="user", content="What is the weather in Paris?")]))
    expect(text == FINAL, text)


def tools():
    tool = FunctionTool.from_defaults(fn=get_weather)
    resp = llm.chat_with_tools([tool], user_msg="What is the weather in Paris?")
    calls = llm.get_tool_calls_from_response(resp, error_on_no_tool_call=True)
    expect(calls[0].tool_name == "get_weather" and calls[0].tool_kwargs == {"city": "Paris"},
           str(calls))
    result = tool(**calls[0].tool_kwargs)
    history = [ChatMessage(role="user", content="What is the weather in Paris?"),
               resp.message,
               ChatMessage(role="tool", content=str(result),
                           additional_kwargs={"tool_call_id": calls[0].tool_id})]
    final = llm.chat_with_tools([tool], chat_history=history)
    expect(final.message.content == FINAL, final.message.content)


def structured():
    out = llm.as_structured_llm(Weather).complete("What is the weather in Paris?")
    raw = out.raw
    expect(raw == Weather(city="Paris", temp_c=21), json.dumps(str(raw)))


for name, fn in [("complete", complete), ("chat", chat), ("stream_chat", stream_chat),
                 ("chat_with_tools round trip", tools),
                 ("as_structured_llm", structured)]:
    checks.run(name, fn)
checks.exit()
