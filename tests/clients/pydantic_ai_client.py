"""pydantic-ai through hallgate: an agent with a tool, streaming, native structured output."""

from __future__ import annotations

import asyncio

from _checks import FINAL, Checks, expect, get_weather_impl
from pydantic import BaseModel
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

checks = Checks("pydantic-ai", "pydantic-ai-slim")
provider = OpenAIProvider(base_url=checks.base_url, api_key="x")


class Weather(BaseModel):
    city: str
    temp_c: int


def weather_agent(model) -> Agent:
    agent = Agent(model, instructions="Use the weather tool.")

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return get_weather_impl(city)

    return agent


def tool_agent():
    result = weather_agent(OpenAIChatModel("fake", provider=provider)).run_sync(
        "What is the weather in Paris?")
    expect(result.output == FINAL, result.output)
    kinds = [p.part_kind for m in result.all_messages() for p in m.parts]
    expect("tool-call" in kinds and "tool-return" in kinds, str(kinds))


def tool_agent_responses():
    result = weather_agent(OpenAIResponsesModel("fake", provider=provider)).run_sync(
        "What is the weather in Paris?")
    expect(result.output == FINAL, result.output)


def stream():
    async def go() -> str:
        agent = Agent(OpenAIChatModel("fake", provider=provider))
        async with agent.run_stream("What is the weather in Paris?") as run:
            return await run.get_output()

    out = asyncio.run(go())
    expect(out == FINAL, out)


def structured():
    agent = Agent(OpenAIChatModel("fake", provider=provider), output_type=NativeOutput(Weather))
    out = agent.run_sync("What is the weather in Paris?").output
    expect(out == Weather(city="Paris", temp_c=21), repr(out))


for name, fn in [("agent + tool (chat)", tool_agent),
                 ("agent + tool (Responses)", tool_agent_responses),
                 ("run_stream", stream), ("NativeOutput (json_schema)", structured)]:
    checks.run(name, fn)
checks.exit()
