"""Agent traffic on the real embedded model (default policy): a request offering a tool
and a follow-up turn carrying the tool's result, on every route. Whatever the small model
makes of the tool (a call or text), the gateway answers it, and a text answer written
from a tool result is judged."""

from __future__ import annotations

import openai
import pytest

from proxy.config import EMBEDDED_MODEL_NAME

pytestmark = pytest.mark.model

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
QUESTION = {"role": "user", "content": "What is the weather in Paris today?"}
HISTORY = [QUESTION,
           {"role": "assistant", "content": None, "tool_calls": [
               {"id": "call_0", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
           {"role": "tool", "tool_call_id": "call_0",
            "content": '{"city": "Paris", "temp_c": 21, "sky": "clear"}'}]


@pytest.mark.parametrize("prefix", ["", "/strict"], ids=["annotate", "strict"])
def test_a_tool_request_and_its_follow_up_turn_on_the_real_model(embedded_gateway, prefix):
    client = openai.OpenAI(base_url=f"{embedded_gateway}{prefix}/v1", api_key="unused",
                           max_retries=0, timeout=600)
    first = client.chat.completions.create(model=EMBEDDED_MODEL_NAME, messages=[QUESTION],
                                           tools=[WEATHER], max_tokens=32, temperature=0,
                                           seed=7)
    message = first.choices[0].message
    meta = first.model_extra["hallgate"]
    if message.tool_calls:  # passed unjudged, unaltered
        assert message.tool_calls[0].function.name == "get_weather"
        assert "passed unjudged" in meta["reasons"][0]
    else:  # a text answer is judged as text
        assert meta["detectors"]["halt"]["status"] == "ok"
    second = client.chat.completions.create(model=EMBEDDED_MODEL_NAME, messages=HISTORY,
                                            tools=[WEATHER], max_tokens=32, temperature=0,
                                            seed=7)
    meta = second.model_extra["hallgate"]
    assert second.choices[0].message.content or second.choices[0].message.tool_calls
    if not second.choices[0].message.tool_calls:
        assert meta["detectors"]["halt"]["status"] == "ok"  # judged on its logprobs
        if prefix:
            assert meta["detectors"]["edfl"]["status"] == "ok"  # skeletons without the
            # tool result were asked


def test_an_agents_sdk_agent_with_a_tool_runs_on_the_real_model(embedded_gateway):
    """The README's example: whatever SmolLM2 makes of the tool, the run completes and
    its last model call was judged by the default route."""
    agents = pytest.importorskip("agents")  # the `clients` extra (install_test_tools.sh)
    import asyncio

    import httpx2

    headers: list[dict] = []

    async def record(response) -> None:
        headers.append({k: v for k, v in response.headers.items()
                        if k.startswith("x-hallgate")})

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return "21 C, clear"

    agents.set_tracing_disabled(True)
    gateway = openai.AsyncOpenAI(
        base_url=f"{embedded_gateway}/v1", api_key="unused", max_retries=0, timeout=600,
        http_client=httpx2.AsyncClient(event_hooks={"response": [record]}, timeout=600))
    agent = agents.Agent(name="weather", tools=[get_weather],
                         instructions="Answer in one short sentence.",
                         model=agents.OpenAIResponsesModel(model=EMBEDDED_MODEL_NAME,
                                                           openai_client=gateway),
                         model_settings=agents.ModelSettings(max_tokens=200, temperature=0))
    result = asyncio.run(agents.Runner.run(agent, "What is the weather in Paris?",
                                           max_turns=3))
    assert isinstance(result.final_output, str) and result.final_output.strip()
    assert headers and headers[-1]["x-hallgate-route"] == "default"
    assert "x-hallgate-risk" in headers[-1]  # a text answer: HALT scored it
