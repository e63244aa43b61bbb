"""The embedded SmolLM2 is judged under its own shipped calibration bundle."""

from __future__ import annotations

import pytest

from calibration.bundle import load_bundle
from proxy.config import EMBEDDED_MODEL_NAME
from tests.calibration.bundles import SHIPPED

pytestmark = pytest.mark.model


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
