"""Structured outputs through the gate: `response_format` passes through, the SDK's
`chat.completions.parse` works on every route of the default policy, and an abstention
on a structured-output request is a refusal, never invalid JSON."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from tests.conftest import fake_settings

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
STRUCTURED = '{"city": "Paris", "temp_c": 21}'
ROUTES = {"annotate": "", "strict": "/strict", "code": "/code"}
ABSTAIN_TEXT = "I won't guess on this one."


class Weather(BaseModel):
    city: str
    temp_c: int


def client_at(url: str, prefix: str = "", **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}{prefix}/v1", api_key="x", max_retries=0,
                         default_headers=headers)


@pytest.mark.parametrize("route", list(ROUTES))
def test_parse_gets_the_structured_answer_or_a_refusal_on_every_route(gateway, fake_upstream,
                                                                      route):
    """code-creative's semantic gate samples plain text ('Paris is the capital of
    France.'); its chosen answer breaks the schema, so it must not replace the JSON."""
    fake_upstream.script.structured = STRUCTURED
    resp = client_at(gateway, ROUTES[route]).chat.completions.parse(
        model="fake", messages=QUESTION, response_format=Weather)
    message = resp.choices[0].message
    sent = next(r for r in fake_upstream.requests if r.get("response_format"))
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["strict"] is True
    meta = resp.model_extra["hallgate"]
    if route == "strict":  # strict-factual abstains on the fake (EDFL: P = 0.5): a refusal
        assert meta["returned"] == "abstain"
        assert message.parsed is None and message.content is None and message.refusal
        return
    assert message.refusal is None and message.content == STRUCTURED
    assert message.parsed == Weather(city="Paris", temp_c=21)
    if route == "code":  # the semantic gate answered and chose a text sample: withheld
        assert meta["decision"] == "answer"
        assert meta["replacement"] == ("withheld: the chosen answer does not fit the "
                                       "response_format")

POLICY = f"""
version: 1
routes:
  - {{name: strict, match: {{header: strict}}, profile: always-abstain}}
  - {{name: default, default: true, profile: annotate-halt}}
profiles:
  always-abstain:
    detectors: {{halt: {{enabled: true, threshold: 0.0}}}}
    abstention_text: "{ABSTAIN_TEXT}"
  annotate-halt:
    action: annotate
"""


@pytest.fixture
def gated(fake_upstream, start_gateway, tmp_path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(path)))


@pytest.mark.parametrize("fmt", [{"type": "json_object"}, "schema"], ids=["json_object",
                                                                          "json_schema"])
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_an_abstention_on_a_structured_request_is_a_refusal_and_never_invalid_json(
        gated, fake_upstream, fmt, stream):
    fake_upstream.script.structured = STRUCTURED
    if fmt == "schema":
        fmt = {"type": "json_schema", "json_schema": {
            "name": "weather", "strict": True, "schema": Weather.model_json_schema()}}
    client = client_at(gated, **{"x-hallgate-route": "strict"})
    resp = client.chat.completions.create(model="fake", messages=QUESTION,
                                          response_format=fmt, stream=stream)
    if stream:
        chunks = [c for c in resp if c.choices]
        content = "".join(c.choices[0].delta.content or "" for c in chunks) or None
        refusal = "".join(c.choices[0].delta.refusal or "" for c in chunks)
    else:
        content, refusal = resp.choices[0].message.content, resp.choices[0].message.refusal
    assert content is None and refusal == ABSTAIN_TEXT


def test_a_structured_answer_that_passes_comes_back_as_the_upstream_wrote_it(gated,
                                                                            fake_upstream):
    fake_upstream.script.structured = STRUCTURED
    resp = client_at(gated).chat.completions.create(
        model="fake", messages=QUESTION, response_format={"type": "json_object"})
    assert json.loads(resp.choices[0].message.content) == {"city": "Paris", "temp_c": 21}


def test_parse_with_a_strict_function_tool_gets_parsed_arguments(gateway, fake_upstream):
    class GetWeather(BaseModel):
        city: str

    fake_upstream.script.tool_calls = ({"name": "GetWeather",
                                        "arguments": '{"city": "Paris"}'},)
    resp = client_at(gateway, "/strict").chat.completions.parse(
        model="fake", messages=QUESTION, tools=[openai.pydantic_function_tool(GetWeather)])
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.parsed_arguments == GetWeather(city="Paris")
