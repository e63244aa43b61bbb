"""The chat endpoint against our fake upstream: exact forwarding, shaping and fan-out."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import fake_settings

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def test_completion_returns_upstream_answer_and_asks_for_logprobs(client, fake_upstream):
    resp = client.chat.completions.create(model="fake", messages=MESSAGES)
    assert resp.choices[0].message.content == "Paris is the capital of France."
    assert resp.model == "fake"
    assert resp.choices[0].logprobs is None  # the client did not ask for them
    sent = fake_upstream.requests[-1]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20
    assert sent["model"] == "fake-model"


@pytest.mark.parametrize("top_logprobs", [0, 3, 20])
def test_logprobs_returned_at_the_depth_the_client_asked(client, top_logprobs):
    resp = client.chat.completions.create(model="fake", messages=MESSAGES, logprobs=True,
                                          top_logprobs=top_logprobs)
    content = resp.choices[0].logprobs.content
    assert len(content) == 6
    assert all(len(t.top_logprobs) == top_logprobs for t in content)


def test_every_standard_field_is_forwarded(client, fake_upstream):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    client.chat.completions.create(
        model="fake", messages=MESSAGES, temperature=0.3, top_p=0.9, max_tokens=17,
        stop=["\n"], seed=7, tools=tools, response_format={"type": "json_object"},
        user="u-1", presence_penalty=0.1, extra_body={"custom_field": 1})
    sent = fake_upstream.requests[-1]
    assert sent["temperature"] == 0.3 and sent["top_p"] == 0.9
    assert sent["max_completion_tokens"] == 17 and "max_tokens" not in sent
    assert sent["stop"] == ["\n"] and sent["seed"] == 7 and sent["tools"] == tools
    assert sent["response_format"] == {"type": "json_object"} and sent["user"] == "u-1"
    assert sent["presence_penalty"] == 0.1 and sent["custom_field"] == 1


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_n_is_fanned_out_when_the_upstream_ignores_it(fake_upstream, start_gateway, stream):
    fake_upstream.script.honours_n = False
    fake_upstream.script.texts.extend(["one", "two", "three"])
    url = start_gateway(fake_settings(fake_upstream, supports_n=False))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    if stream:
        texts = {0: "", 1: "", 2: ""}
        for chunk in client.chat.completions.create(model="fake", messages=MESSAGES, n=3,
                                                    seed=5, stream=True):
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
        got = sorted(texts.values())
    else:
        resp = client.chat.completions.create(model="fake", messages=MESSAGES, n=3, seed=5)
        assert [c.index for c in resp.choices] == [0, 1, 2]
        assert resp.usage.completion_tokens == 3
        got = sorted(c.message.content for c in resp.choices)
    assert got == ["one", "three", "two"]
    sent = fake_upstream.requests[-3:]
    assert [r["n"] for r in sent] == [1, 1, 1]
    assert sorted(r["seed"] for r in sent) == [5, 6, 7]  # distinct samples


def test_n_is_passed_through_when_the_upstream_honours_it(client, fake_upstream):
    resp = client.chat.completions.create(model="fake", messages=MESSAGES, n=2)
    assert len(resp.choices) == 2 and len(fake_upstream.requests) == 1


def test_streaming_yields_chunks_and_usage(client):
    chunks = list(client.chat.completions.create(
        model="fake", messages=MESSAGES, stream=True, logprobs=True, top_logprobs=2,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris is the capital of France."
    assert all(c.object == "chat.completion.chunk" and c.model == "fake" for c in chunks)
    tokens = [t for c in chunks if c.choices and c.choices[0].logprobs
              for t in c.choices[0].logprobs.content]
    assert len(tokens) == 6 and all(len(t.top_logprobs) == 2 for t in tokens)
    assert chunks[-1].usage.completion_tokens == 6


def test_streaming_without_usage_request_sends_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="fake", messages=MESSAGES,
                                                 stream=True))
    assert all(c.usage is None for c in chunks)


def test_sse_wire_format_ends_with_done(gateway):
    with httpx.stream("POST", f"{gateway}/v1/chat/completions",
                      json={"model": "fake", "messages": MESSAGES, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"


def test_models_health_ready_and_request_id(gateway):
    models = httpx.get(f"{gateway}/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["fake"]
    assert httpx.get(f"{gateway}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{gateway}/readyz").status_code == 200
    r = httpx.get(f"{gateway}/healthz", headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"


def test_route_prefix_in_base_url_reaches_the_same_endpoint(gateway):
    client = openai.OpenAI(base_url=f"{gateway}/strict/v1", api_key="x", max_retries=0)
    assert client.chat.completions.create(model="fake", messages=MESSAGES).choices
    assert [m.id for m in client.models.list()] == ["fake"]
