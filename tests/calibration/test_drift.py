"""PSI against a bundle's calibration histogram: the formula against a naive loop, and the
gateway's metric rising when live scores leave the calibration distribution."""

from __future__ import annotations

import json
import math
import re

import httpx
import numpy as np
import openai
import pytest

from calibration.drift import psi
from tests.calibration.bundles import write_bundle
from tests.conftest import fake_settings
from tests.fake_upstream import Script


def test_psi_matches_a_naive_loop_and_is_zero_on_the_same_distribution():
    rng = np.random.default_rng(0)
    e, a = rng.integers(1, 50, 20), rng.integers(1, 50, 20)
    es, as_ = e / e.sum(), a / a.sum()
    naive = sum((as_[i] - es[i]) * math.log(as_[i] / es[i]) for i in range(20))
    assert psi(e, a) == pytest.approx(naive)
    assert psi(e, 3 * e) == pytest.approx(0.0)
    assert psi([10, 0], [0, 10]) > 1.0  # an empty bin is floored, not infinite


POLICY = """
version: 1
routes:
  - {name: default, default: true, profile: mean}
profiles:
  mean:
    detectors: {halt: {enabled: false}, mean_logprob: {enabled: true}}
"""


def psi_metric(url: str) -> float | None:
    found = re.search(r'hallgate_calibration_psi\{detector="mean_logprob",model="fake"\} (\S+)',
                      httpx.get(f"{url}/metrics").text)
    return float(found.group(1)) if found else None


@pytest.mark.parametrize(("logprob", "drifted"), [(-0.05, False), (-3.0, True)])
def test_the_psi_metric_rises_when_scores_leave_the_calibration_distribution(
        fake_upstream, start_gateway, tmp_path, logprob, drifted):
    # calibration histogram: every mean_logprob risk in the bin of a -0.05 answer (0.0476)
    counts = [0] * 20
    counts[0] = 100
    path = write_bundle(tmp_path / "bundles" / "fake")
    manifest = json.loads((path / "bundle.json").read_text())
    manifest["detectors"]["mean_logprob"]["histogram"]["counts"] = counts
    (path / "bundle.json").write_text(json.dumps(manifest))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    url = start_gateway(fake_settings(fake_upstream, policy_file=str(policy),
                                      calibration_dir=str(tmp_path / "bundles")))
    fake_upstream.script = Script(logprob=logprob)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    for _ in range(50):
        client.chat.completions.create(model="fake", messages=[
            {"role": "user", "content": "What is the capital of France?"}])
    value = psi_metric(url)
    assert value is not None
    assert (value > 0.2) == drifted, value


def test_the_monitor_bins_on_observe_and_computes_psi_only_when_read(tmp_path):
    from calibration.bundle import load_bundle
    from calibration.drift import MIN_SCORES, DriftMonitor

    bundle = load_bundle(write_bundle(tmp_path / "fake"), names={"fake"}, load_weights=False)
    monitor = DriftMonitor(window=100)
    ready = [monitor.observe(bundle, "mean_logprob", 0.3) for _ in range(MIN_SCORES + 20)]
    assert ready.index(True) == MIN_SCORES - 1 and ready.count(True) == 1
    assert monitor.observe(bundle, "no-such-detector", 0.3) is False
    assert monitor.psi(bundle, "no-such-detector") is None
    hist = bundle.manifest.detectors["mean_logprob"].histogram
    live = [0] * len(hist.counts)
    live[6] = MIN_SCORES + 20  # 0.3 falls in [0.30, 0.35)
    assert monitor.psi(bundle, "mean_logprob") == pytest.approx(psi(hist.counts, live))
