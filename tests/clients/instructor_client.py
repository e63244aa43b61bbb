"""instructor through hallgate: a pydantic model from a JSON-schema response, a forced
tool call and JSON mode, plain and streamed (Partial)."""

from __future__ import annotations

import instructor
import openai
from _checks import Checks, expect
from pydantic import BaseModel

checks = Checks("instructor", "instructor")
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class Weather(BaseModel):
    city: str
    temp_c: int


def client(mode):
    return instructor.from_openai(openai.OpenAI(base_url=checks.base_url, api_key="x",
                                                max_retries=0), mode=mode)


def json_schema():
    out = client(instructor.Mode.JSON_SCHEMA).chat.completions.create(
        model="fake", messages=ASK, response_model=Weather, max_retries=0)
    expect(out.model_dump() == {"city": "Paris", "temp_c": 21}, repr(out))


def tools_mode():
    out = client(instructor.Mode.TOOLS).chat.completions.create(
        model="fake", messages=ASK, response_model=Weather, max_retries=0)
    expect(out.model_dump() == {"city": "Paris", "temp_c": 21}, repr(out))


def json_mode():
    out = client(instructor.Mode.JSON).chat.completions.create(
        model="fake", messages=ASK, response_model=Weather, max_retries=0)
    expect(out.model_dump() == {"city": "Paris", "temp_c": 21}, repr(out))


def partial_stream():
    parts = list(client(instructor.Mode.JSON_SCHEMA).chat.completions.create_partial(
        model="fake", messages=ASK, response_model=Weather, max_retries=0))
    expect(parts and parts[-1].city == "Paris" and parts[-1].temp_c == 21, repr(parts[-1:]))


for name, fn in [("Mode.JSON_SCHEMA", json_schema), ("Mode.TOOLS", tools_mode),
                 ("Mode.JSON", json_mode),
                 ("create_partial (stream)", partial_stream)]:
    checks.run(name, fn)
checks.exit()
