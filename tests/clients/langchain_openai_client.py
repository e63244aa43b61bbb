"""LangChain's ChatOpenAI through hallgate: invoke, stream, bind_tools, structured output."""

from __future__ import annotations

from _checks import FINAL, Checks, expect, get_weather_impl
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

checks = Checks("LangChain ChatOpenAI", "langchain-openai")
llm = ChatOpenAI(model="fake", base_url=checks.base_url, api_key="x", max_retries=0)


class Weather(BaseModel):
    city: str
    temp_c: int


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return get_weather_impl(city)


def invoke():
    msg = llm.invoke("What is the weather in Paris?")
    expect(msg.content == FINAL, msg.content)


def stream():
    text = "".join(chunk.content for chunk in llm.stream("What is the weather in Paris?"))
    expect(text == FINAL, text)


def bind_tools():
    bound = llm.bind_tools([get_weather])
    question = HumanMessage("What is the weather in Paris?")
    ai = bound.invoke([question])
    expect(ai.tool_calls and ai.tool_calls[0]["name"] == "get_weather", str(ai.tool_calls))
    expect(ai.tool_calls[0]["args"] == {"city": "Paris"}, str(ai.tool_calls[0]["args"]))
    result = get_weather.invoke(ai.tool_calls[0]["args"])
    final = bound.invoke([question, ai, ToolMessage(result, tool_call_id=ai.tool_calls[0]["id"])])
    expect(final.content == FINAL, final.content)


def bind_tools_stream():
    gathered = None
    for chunk in llm.bind_tools([get_weather]).stream("What is the weather in Paris?"):
        gathered = chunk if gathered is None else gathered + chunk
    expect(gathered.tool_calls[0]["args"] == {"city": "Paris"}, str(gathered.tool_calls))


def structured():
    out = llm.with_structured_output(Weather).invoke("What is the weather in Paris?")
    expect(out == Weather(city="Paris", temp_c=21), repr(out))


def structured_by_tool():
    out = llm.with_structured_output(Weather, method="function_calling").invoke(
        "What is the weather in Paris?")
    expect(out == Weather(city="Paris", temp_c=21), repr(out))


def responses_api():
    msg = ChatOpenAI(model="fake", base_url=checks.base_url, api_key="x", max_retries=0,
                     use_responses_api=True).invoke("What is the weather in Paris?")
    expect(msg.text == FINAL, str(msg.content))


for name, fn in [("invoke", invoke), ("stream", stream), ("bind_tools", bind_tools),
                 ("bind_tools stream", bind_tools_stream),
                 ("with_structured_output", structured),
                 ("with_structured_output(function_calling)", structured_by_tool),
                 ("Responses API", responses_api)]:
    checks.run(name, fn)
checks.exit()
