"""Interim 1xx upstream responses through the whole gateway: every client gets the answer
to its own question, however the 1xx and the final answer are cut into writes, one request
at a time and eight at once, JSON and streamed, on the lean path and the litellm path.

A client that took an interim response for the answer would return the connection to the
pool with the real answer still in flight, and the next request on it would read that
answer as its own: one client's answer delivered to another.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from proxy.config import RetrySettings, Settings, UpstreamModel
from tests.interim_upstream import SEGMENTATIONS, InterimUpstream

POLICY = """
version: 1
routes:
  - {name: forward, default: true, profile: detectors-off}
profiles:
  detectors-off:
    detectors: {halt: {enabled: false}, edfl: {enabled: false}, semantic: {enabled: false}}
    action: shadow
"""
QUESTIONS = [f"question {n}" for n in range(1, 13)]


@pytest.fixture(params=sorted(SEGMENTATIONS))
def interim_upstream(request):
    upstream = InterimUpstream(request.param).start()
    yield upstream
    upstream.stop()


@pytest.fixture(params=["openai", "litellm"])
def client(request, interim_upstream, start_gateway, tmp_path, monkeypatch) -> openai.OpenAI:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    monkeypatch.setenv("HALLGATE_TEST_UPSTREAM_KEY", "sk-interim")
    model = ("interim-model" if request.param == "openai" else "openai/interim-model")
    settings = Settings(
        models=[UpstreamModel(name="interim", provider=request.param, model=model,
                              api_base=interim_upstream.api_base, timeout_s=5.0,
                              api_key_env="HALLGATE_TEST_UPSTREAM_KEY")],
        retry=RetrySettings(max_attempts=1, deadline_s=10.0),
        policy_file=str(policy))
    url = start_gateway(settings)
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def ask(client: openai.OpenAI, question: str, stream: bool) -> str:
    messages = [{"role": "user", "content": question}]
    if not stream:
        resp = client.chat.completions.create(model="interim", messages=messages)
        return resp.choices[0].message.content
    chunks = client.chat.completions.create(model="interim", messages=messages, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_each_sequential_request_gets_its_own_answer(client, interim_upstream, stream):
    answers = [ask(client, q, stream) for q in QUESTIONS[:6]]
    assert answers == [f"answer to {q}" for q in QUESTIONS[:6]]
    assert interim_upstream.requests == 6


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_each_of_eight_concurrent_requests_gets_its_own_answer(client, stream):
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda q: ask(client, q, stream), QUESTIONS))
    assert answers == [f"answer to {q}" for q in QUESTIONS]


@pytest.mark.parametrize("interim_upstream", ["stray-answer-after"], indirect=True)
@pytest.mark.parametrize("client", ["openai"], indirect=True)
def test_an_answer_no_request_asked_for_is_counted_and_reaches_no_one(client):
    answers = [ask(client, q, stream=False) for q in QUESTIONS[:4]]
    assert answers == [f"answer to {q}" for q in QUESTIONS[:4]]
    metrics = httpx.get(str(client.base_url).replace("/v1/", "/metrics")).text
    assert "hallgate_upstream_unsolicited_closes_total 4.0" in metrics
