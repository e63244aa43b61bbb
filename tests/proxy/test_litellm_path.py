"""The litellm upstream path against the fake upstream: same behaviour as the httpx path."""

from __future__ import annotations

import openai
import pytest

from proxy.config import UpstreamModel
from tests.conftest import fake_settings

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def litellm_client(fake_upstream, start_gateway, monkeypatch) -> openai.OpenAI:
    monkeypatch.setenv("HALLGATE_TEST_UPSTREAM_KEY", "sk-fake")
    settings = fake_settings(fake_upstream)
    settings.models = [UpstreamModel(name="via-litellm", provider="litellm",
                                     model="openai/fake-model", api_base=fake_upstream.api_base,
                                     api_key_env="HALLGATE_TEST_UPSTREAM_KEY", timeout_s=5.0)]
    url = start_gateway(settings)
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def test_completion_with_logprobs(litellm_client, fake_upstream):
    resp = litellm_client.chat.completions.create(model="via-litellm", messages=MESSAGES,
                                                  logprobs=True, top_logprobs=3)
    assert resp.choices[0].message.content == "Paris is the capital of France."
    assert all(len(t.top_logprobs) == 3 for t in resp.choices[0].logprobs.content)
    sent = fake_upstream.requests[-1]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20
    assert sent["model"] == "fake-model"


def test_streaming(litellm_client):
    chunks = list(litellm_client.chat.completions.create(model="via-litellm",
                                                         messages=MESSAGES, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris is the capital of France."


def test_retries_429_and_gives_up_on_500_as_502(litellm_client, fake_upstream):
    fake_upstream.fail_next("429", retry_after=0.1)
    assert litellm_client.chat.completions.create(model="via-litellm", messages=MESSAGES)
    assert len(fake_upstream.requests) == 2  # litellm's own retries are off; ours ran
    fake_upstream.fail_next("500", times=5)
    with pytest.raises(openai.APIStatusError) as exc:
        litellm_client.chat.completions.create(model="via-litellm", messages=MESSAGES)
    assert exc.value.status_code == 502
    assert len(fake_upstream.requests) == 5
