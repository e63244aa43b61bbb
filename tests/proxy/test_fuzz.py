"""The served OpenAPI spec is complete (chat request schema, `route_prefix`,
error responses), and a short, seeded schemathesis run over every operation finds no 5xx
and only OpenAI-shaped errors. The longer run (docs/OPERATIONS.md):

    HALLGATE_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -q tests/proxy/test_fuzz.py
"""

from __future__ import annotations

import os

import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings

from tests.conftest import fake_settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation import GenerationMode  # noqa: E402

EXAMPLES = int(os.environ.get("HALLGATE_FUZZ_EXAMPLES", "40"))  # per generation mode

POLICY = """
version: 1
routes:
  - {name: strict, match: {header: strict, path_prefix: /strict}, profile: halt-only}
  - {name: default, default: true, profile: halt-only}
profiles:
  halt-only:
    extends: strict-factual
    detectors: {edfl: {enabled: false}}
"""


@pytest.fixture
def fuzzed(fake_upstream, start_gateway, tmp_path) -> str:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(policy)))


def test_spec_has_the_chat_body_route_prefix_and_errors(fuzzed):
    spec = httpx.get(f"{fuzzed}/openapi.json").json()
    chat = spec["paths"]["/{route_prefix}/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    request = spec["components"]["schemas"]["ChatCompletionRequest"]
    assert {"model", "messages"} <= set(request["required"])
    assert [p["name"] for p in chat["parameters"]] == ["route_prefix", "x-hallgate-route"]
    assert {"400", "401", "403", "404", "413", "429", "502", "504"} <= set(chat["responses"])
    assert "Retry-After" in chat["responses"]["429"]["headers"]


def assert_openai_error(resp: requests.Response) -> None:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["type"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["positive", "negative"])
def test_schemathesis_finds_no_5xx_and_only_openai_errors(fuzzed, mode):
    schema = schemathesis.openapi.from_url(f"{fuzzed}/openapi.json")
    session = requests.Session()

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(generation_mode=mode))
    def run(case) -> None:
        resp = case.call(base_url=fuzzed, session=session, timeout=30)
        where = f"{case.method} {case.formatted_path}: {resp.status_code} {resp.text[:300]}"
        assert resp.status_code < 500, where
        if resp.status_code >= 400:
            assert_openai_error(resp)

    run()
