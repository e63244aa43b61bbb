"""The OpenAI Agents SDK through hallgate: an agent with one function tool, over the
Responses API (the SDK's default) and over chat completions; the final answer is judged
(the x-hallgate-* headers of the last model call carry HALT's risk; the tool call before
it passed unjudged)."""

from __future__ import annotations

import asyncio

import httpx2
from _checks import FINAL, Checks, expect, get_weather_impl
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

checks = Checks("OpenAI Agents SDK", "openai-agents")
set_tracing_disabled(True)
decisions: list[dict[str, str]] = []  # the x-hallgate-* headers of every model call


async def _record(response: httpx2.Response) -> None:
    decisions.append({k: v for k, v in response.headers.items() if k.startswith("x-hallgate")})


def openai_client() -> AsyncOpenAI:
    return AsyncOpenAI(base_url=checks.base_url, api_key="x", max_retries=0,
                       http_client=httpx2.AsyncClient(event_hooks={"response": [_record]}))


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return get_weather_impl(city)


def run_agent(model) -> str:
    decisions.clear()
    agent = Agent(name="weather", instructions="Answer with the weather tool.",
                  tools=[get_weather], model=model)
    result = asyncio.run(Runner.run(agent, "What is the weather in Paris?"))
    expect(result.final_output == FINAL, str(result.final_output))
    calls = [i for i in result.new_items if i.type == "tool_call_item"]
    outputs = [i for i in result.new_items if i.type == "tool_call_output_item"]
    expect(len(calls) == 1 and len(outputs) == 1, [i.type for i in result.new_items])
    expect(len(decisions) == 2, str(decisions))
    first, last = decisions
    expect("x-hallgate-risk" not in first, f"the tool call was judged: {first}")
    expect("x-hallgate-risk" in last and last.get("x-hallgate-returned") == "answer",
           f"the final answer was not judged: {last}")
    return f"final answer judged: decision {last.get('x-hallgate-decision')}, " \
           f"risk {last['x-hallgate-risk']}"


def responses_agent():
    return run_agent(OpenAIResponsesModel(model="fake", openai_client=openai_client()))


def chat_agent():
    return run_agent(OpenAIChatCompletionsModel(model="fake", openai_client=openai_client()))


def streamed_agent():
    async def go() -> str:
        agent = Agent(name="weather", tools=[get_weather], model=OpenAIResponsesModel(
            model="fake", openai_client=openai_client()))
        result = Runner.run_streamed(agent, "What is the weather in Paris?")
        kinds = [event.type async for event in result.stream_events()]
        expect("run_item_stream_event" in kinds, str(set(kinds)))
        return result.final_output

    out = asyncio.run(go())
    expect(out == FINAL, str(out))


for name, fn in [("agent + function tool (Responses)", responses_agent),
                 ("agent + function tool (chat)", chat_agent),
                 ("Runner.run_streamed", streamed_agent)]:
    checks.run(name, fn)
checks.exit()
