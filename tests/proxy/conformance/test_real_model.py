"""The real embedded model (llama.cpp's server with SmolLM2-135M) as a configured upstream,
reached only through tinyproxy: the lean path's proxy support end to end on a real model."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest

from proxy.config import (
    EMBEDDED_MODEL_NAME,
    EmbeddedSettings,
    RetrySettings,
    Settings,
    UpstreamModel,
)
from proxy.embedded import EmbeddedModel, child_environment

pytestmark = pytest.mark.model
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def llama_server():
    model = EmbeddedModel(EmbeddedSettings(n_threads=1))
    process = subprocess.Popen(model.command(), env=child_environment(dict(os.environ)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, "llama.cpp's server exited at start"
            try:
                if httpx.get(f"{model.api_base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("llama.cpp's server did not answer")
        yield model
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_real_model_through_a_forward_proxy(llama_server, tinyproxy, start_gateway, sdk,
                                                monkeypatch, stream):
    monkeypatch.setenv("HTTP_PROXY", tinyproxy.url())
    upstream = UpstreamModel(name="local", provider="openai", model=llama_server.model_name,
                             api_base=llama_server.api_base, supports_n=False,
                             max_tokens_field="max_tokens", timeout_s=120.0)
    url = start_gateway(Settings(models=[upstream], retry=RetrySettings(max_attempts=1)))
    client = sdk(url, timeout=300)
    if stream:
        chunks = client.chat.completions.create(model="local", messages=QUESTION,
                                                max_tokens=12, temperature=0, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(model="local", messages=QUESTION,
                                              max_tokens=12, temperature=0
                                              ).choices[0].message.content
    assert text.strip()
    assert f"{llama_server.api_base}/chat/completions" in tinyproxy.log()


def test_the_embedded_model_starts_and_answers_with_a_proxy_in_the_environment(
        start_gateway, sdk, monkeypatch):
    """The gateway's loopback child is never reached through HTTP_PROXY (nothing listens
    on port 9), neither by the readiness check nor by requests."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    url = start_gateway(Settings(embedded=EmbeddedSettings(n_threads=1, startup_timeout_s=60)))
    client = sdk(url, timeout=300)
    text = client.chat.completions.create(model=EMBEDDED_MODEL_NAME, messages=QUESTION,
                                          max_tokens=8, temperature=0).choices[0].message.content
    assert text.strip()
