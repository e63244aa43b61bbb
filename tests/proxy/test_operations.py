"""Gateway keys, metrics and graceful shutdown, over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
import yaml

from proxy.embedded import free_port
from tests.conftest import fake_settings

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def keyed_gateway(fake_upstream, start_gateway, monkeypatch) -> str:
    monkeypatch.setenv("HG_KEY_TEAM_A", "sk-team-a-secret")
    settings = fake_settings(fake_upstream, api_keys=[{"name": "team-a",
                                                       "key_env": "HG_KEY_TEAM_A"}])
    return start_gateway(settings)


@pytest.mark.parametrize("key", ["wrong", "sk-team-a-secre", ""], ids=["wrong", "prefix",
                                                                       "empty"])
def test_bad_key_is_401_in_openai_shape(keyed_gateway, key):
    client = openai.OpenAI(base_url=f"{keyed_gateway}/v1", api_key=key or "x",
                           max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        client.chat.completions.create(model="fake", messages=MESSAGES)
    assert exc.value.body["type"] == "authentication_error"


def test_good_key_passes_and_health_needs_none(keyed_gateway):
    client = openai.OpenAI(base_url=f"{keyed_gateway}/v1", api_key="sk-team-a-secret",
                           max_retries=0)
    assert client.chat.completions.create(model="fake", messages=MESSAGES).choices
    assert httpx.get(f"{keyed_gateway}/healthz").status_code == 200
    assert httpx.get(f"{keyed_gateway}/v1/models").status_code == 401


def test_metrics_count_requests_upstream_and_retries(client, gateway, fake_upstream):
    fake_upstream.fail_next("500")
    client.chat.completions.create(model="fake", messages=MESSAGES)
    text = httpx.get(f"{gateway}/metrics").text
    assert ('hallgate_requests_total{profile="annotate-halt",route="default",status="2xx"} 1.0'
            in text)  # the default route of policies/examples/default.yaml
    assert 'hallgate_upstream_retries_total{model="fake"} 1.0' in text
    assert 'hallgate_tokens_total{kind="completion",model="fake"} 6.0' in text
    assert "hallgate_in_flight_requests 0.0" in text


def test_sigterm_drains_in_flight_requests(fake_upstream, tmp_path):
    fake_upstream.script.latency_s = 1.5
    port = free_port()
    config = tmp_path / "hallgate.yaml"
    config.write_text(yaml.safe_dump({"models": [{
        "name": "fake", "model": "fake-model", "api_base": fake_upstream.api_base}]}))
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve", "--config",
                             str(config), "--port", str(port)],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail(f"`hallgate serve` did not become ready (exit code {proc.poll()})")
        result = {}

        def call() -> None:
            result["resp"] = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                                        json={"model": "fake", "messages": MESSAGES})

        thread = threading.Thread(target=call)
        thread.start()
        time.sleep(0.5)  # the request is now waiting on the slow upstream
        proc.send_signal(signal.SIGTERM)
        thread.join(timeout=30)
        assert result["resp"].status_code == 200
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    finally:
        if proc.poll() is None:
            proc.kill()
