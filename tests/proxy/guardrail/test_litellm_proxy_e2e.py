"""End to end with a real LiteLLM proxy process (litellm[proxy] in .bench-venv/, installed
by scripts/bench_tools.sh) in front of the fake upstream, hallgate as its Generic
Guardrail in mode [pre_call, post_call]: a hallucination-shaped answer is blocked, a
consistent one passes. Skipped when .bench-venv/bin/litellm is absent."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from proxy.embedded import free_port, stop_process
from tests.conftest import fake_settings
from tests.proxy.guardrail.test_litellm_guardrail import POLICY, SCATTERED

REPO = Path(__file__).resolve().parents[3]
LITELLM = REPO / ".bench-venv" / "bin" / "litellm"
pytestmark = pytest.mark.skipif(not LITELLM.exists(),
                                reason=".bench-venv/bin/litellm missing: run "
                                       "scripts/bench_tools.sh")
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def litellm_config(fake_base: str, gateway: str) -> dict:
    """The LiteLLM config README.md documents, pointed at the test servers."""
    return {
        "model_list": [{"model_name": "gpt-fake", "litellm_params": {
            "model": "openai/fake-model", "api_base": fake_base, "api_key": "x"}}],
        "guardrails": [{"guardrail_name": "hallgate", "litellm_params": {
            "guardrail": "generic_guardrail_api", "mode": ["pre_call", "post_call"],
            "api_base": gateway, "default_on": True,
            "additional_provider_specific_params": {"route": "strict"}}}],
        "litellm_settings": {"telemetry": False},
    }


@pytest.fixture
def litellm_proxy(fake_upstream, start_gateway, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    gateway = start_gateway(fake_settings(fake_upstream, policy_file=str(policy)))
    config = tmp_path / "litellm.yaml"
    config.write_text(yaml.safe_dump(litellm_config(fake_upstream.api_base, gateway)))
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "LITELLM_MASTER_KEY")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR",
               LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY="true")
    log = (tmp_path / "litellm.log").open("w")
    proc = subprocess.Popen([str(LITELLM), "--config", str(config), "--host", "127.0.0.1",
                             "--port", str(port), "--num_workers", "1"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "litellm.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "LiteLLM proxy did not start"
            try:
                if httpx.get(f"{url}/health/liveliness", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield openai.OpenAI(base_url=url, api_key="sk-unused", max_retries=0, timeout=60)
    finally:
        stop_process(proc, 20)
        log.close()


def test_litellm_proxy_blocks_a_hallucination_shaped_answer_and_passes_a_clean_one(
        litellm_proxy, fake_upstream):
    fake_upstream.script.text = "Paris."
    clean = litellm_proxy.chat.completions.create(model="gpt-fake", messages=QUESTION)
    assert clean.choices[0].message.content == "Paris."
    fake_upstream.script.texts.extend(["Lyon.", *SCATTERED])  # the answer, then samples
    with pytest.raises(openai.APIStatusError) as exc:
        litellm_proxy.chat.completions.create(model="gpt-fake", messages=QUESTION)
    assert "hallgate abstained (route strict, profile semantic)" in str(exc.value)
