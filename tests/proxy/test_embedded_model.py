"""The gateway on the real embedded llama.cpp model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import httpx
import pytest

from proxy.config import EMBEDDED_MODEL_NAME

pytestmark = pytest.mark.model
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_models_lists_the_embedded_model(embedded_client):
    assert [m.id for m in embedded_client.models.list()] == [EMBEDDED_MODEL_NAME]


def test_completion_with_twenty_logprobs(embedded_client):
    resp = embedded_client.chat.completions.create(
        model=EMBEDDED_MODEL_NAME, messages=QUESTION, max_tokens=16, temperature=0,
        logprobs=True, top_logprobs=20)
    choice = resp.choices[0]
    assert choice.message.content.strip()
    tokens = choice.logprobs.content
    assert len(tokens) >= 1
    assert max(len(t.top_logprobs) for t in tokens) == 20
    assert all(t.logprob <= 0.0 for t in tokens)


def test_streaming_completion(embedded_client):
    chunks = list(embedded_client.chat.completions.create(
        model=EMBEDDED_MODEL_NAME, messages=QUESTION, max_tokens=16, temperature=0,
        stream=True, logprobs=True, top_logprobs=5))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    tokens = [t for c in chunks if c.choices and c.choices[0].logprobs
              for t in c.choices[0].logprobs.content or ()]
    assert tokens and all(len(t.top_logprobs) <= 5 for t in tokens)


def test_n_three_returns_three_choices(embedded_client):
    resp = embedded_client.chat.completions.create(
        model=EMBEDDED_MODEL_NAME, messages=QUESTION, max_tokens=8, temperature=1.0, n=3)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert all(c.message.content is not None for c in resp.choices)


def test_ready_once_the_model_answers(embedded_gateway):
    assert httpx.get(f"{embedded_gateway}/readyz").status_code == 200


async def test_the_embedded_model_is_restarted_when_it_dies():
    import asyncio

    from proxy.embedded import EmbeddedModel

    model = EmbeddedModel()
    await model.start()
    try:
        first_pid = model._proc.pid
        model._proc.kill()
        for _ in range(600):
            await asyncio.sleep(0.1)
            if model.restarts == 1 and model.alive():
                break
        assert model.restarts == 1 and model.alive() and model._proc.pid != first_pid
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{model.api_base}/models")).status_code == 200
    finally:
        await model.stop()
    assert not model.alive()


def test_child_environment_drops_llama_server_settings():
    from proxy.embedded import child_environment

    env = child_environment({"PORT": "8080", "host": "0.0.0.0", "HF_MODEL_REPO_ID": "x/y",
                             "PATH": "/bin", "HALLGATE_PORT": "8080"})
    assert env == {"PATH": "/bin", "HALLGATE_PORT": "8080", "HF_HUB_OFFLINE": "1"}


async def test_a_port_variable_in_the_environment_does_not_move_the_model(monkeypatch):
    from proxy.embedded import EmbeddedModel

    monkeypatch.setenv("PORT", "9")  # what `make run PORT=...` puts in the environment
    model = EmbeddedModel()
    await model.start()
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{model.api_base}/models")).status_code == 200
    finally:
        await model.stop()


def test_stream_ends_with_usage_when_asked(embedded_client):
    """llama.cpp sends no usage in streams; the gateway counts it, and the counts equal the
    ones llama.cpp reports for the same request without streaming."""
    messages = [{"role": "system", "content": "Answer briefly."}, *QUESTION]
    plain = embedded_client.chat.completions.create(
        model=EMBEDDED_MODEL_NAME, messages=messages, max_tokens=12, temperature=0)
    chunks = list(embedded_client.chat.completions.create(
        model=EMBEDDED_MODEL_NAME, messages=messages, max_tokens=12, temperature=0,
        stream=True, stream_options={"include_usage": True}))
    last = [c for c in chunks if c.usage is not None]
    assert len(last) == 1 and last[0].choices == []
    usage = last[0].usage
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content  # the same greedy answer
    assert usage.prompt_tokens == plain.usage.prompt_tokens
    assert usage.completion_tokens == plain.usage.completion_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_without_include_usage_has_no_usage_chunk(embedded_client):
    chunks = list(embedded_client.chat.completions.create(
        model=EMBEDDED_MODEL_NAME, messages=QUESTION, max_tokens=4, temperature=0,
        stream=True))
    assert all(c.usage is None for c in chunks)
