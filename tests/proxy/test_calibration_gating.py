"""Calibration bundles in the gateway, through the openai SDK against the fake upstream:
the model's bundle supplies the thresholds (the response names it), a model without one
is flagged everywhere and its profile's `uncalibrated` behaviour decides, and a changed
bundle is reloaded while a bad one leaves the previous bundle in force."""

from __future__ import annotations

import re
import time

import httpx
import openai
import pytest

from detectors.logprob_stats.detector import calibrated_thresholds
from tests.calibration.bundles import write_bundle
from tests.conftest import fake_settings
from tests.fake_upstream import Script

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
RISKY = -3.0  # every token's logprob: mean_logprob risk 3/4

POLICY = """
version: 1
routes:
  - {name: mean, match: {header: mean}, profile: mean}
  - {name: both, match: {header: both}, profile: both}
  - {name: agnostic, match: {header: agnostic}, profile: agnostic}
  - {name: closed, match: {header: closed}, profile: closed}
  - {name: default, default: true, profile: mean}
profiles:
  mean:
    detectors: {halt: {enabled: false}, mean_logprob: {enabled: true}}
  both:   # HALT abstains on anything (threshold 0): only whether it counts is tested
    detectors: {halt: {enabled: true, threshold: 0.0}, mean_logprob: {enabled: true}}
  agnostic:
    extends: both
    uncalibrated: model_agnostic
  closed:
    extends: mean
    uncalibrated: abstain
"""


def start(fake_upstream, start_gateway, tmp_path, **settings) -> str:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings.setdefault("calibration_dir", str(tmp_path / "bundles"))
    return start_gateway(fake_settings(fake_upstream, policy_file=str(policy), **settings))


def ask(url: str, route: str):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0,
                           default_headers={"x-hallgate-route": route})
    raw = client.chat.completions.with_raw_response.create(model="fake", messages=QUESTION)
    resp = raw.parse()
    return raw.http_response.headers, resp.model_extra["hallgate"], resp


def uncalibrated_count(url: str, behaviour: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    pattern = (r'hallgate_uncalibrated_requests_total\{behaviour="' + behaviour
               + r'",model="fake"\} (\S+)')
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_the_models_bundle_supplies_the_threshold_and_is_named(fake_upstream, start_gateway,
                                                                tmp_path):
    write_bundle(tmp_path / "bundles" / "fake", thresholds={"mean_logprob": 0.9})
    url = start(fake_upstream, start_gateway, tmp_path)
    fake_upstream.script = Script(logprob=RISKY)
    headers, meta, resp = ask(url, "mean")
    judged = meta["detectors"]["mean_logprob"]
    assert judged["threshold"] == 0.9 and judged["threshold_source"] == "calibrated"
    assert meta["decision"] == "answer" and resp.choices[0].message.refusal is None
    name = headers["x-hallgate-calibration"]
    assert name.startswith("fake@") and meta["calibration"] == {
        "bundle": name, "uncalibrated": False, "missing": [], "behaviour": "annotate"}
    assert uncalibrated_count(url, "annotate") == 0


def test_without_a_bundle_the_request_is_flagged_and_annotated_by_default(
        fake_upstream, start_gateway, tmp_path):
    url = start(fake_upstream, start_gateway, tmp_path)
    fake_upstream.script = Script(logprob=RISKY)
    headers, meta, _ = ask(url, "mean")
    assert headers["x-hallgate-calibration"] == "none"
    assert meta["calibration"]["bundle"] == "none" and meta["calibration"]["uncalibrated"]
    assert meta["calibration"]["missing"] == ["mean_logprob"]
    # annotate: judged as configured (the shipped threshold), flagged
    assert meta["detectors"]["mean_logprob"]["threshold"] == pytest.approx(
        calibrated_thresholds()["mean_logprob"])
    assert meta["decision"] == "abstain"
    assert meta["reasons"][-1].startswith("uncalibrated (annotate): no calibration bundle")
    assert uncalibrated_count(url, "annotate") == 1


def test_a_bundle_lacking_an_enabled_detector_is_uncalibrated_for_it(
        fake_upstream, start_gateway, tmp_path):
    write_bundle(tmp_path / "bundles" / "fake", halt=False)
    url = start(fake_upstream, start_gateway, tmp_path)
    headers, meta, _ = ask(url, "both")
    assert headers["x-hallgate-calibration"].startswith("fake@")
    assert meta["calibration"]["missing"] == ["halt"] and meta["calibration"]["uncalibrated"]
    assert uncalibrated_count(url, "annotate") == 1


@pytest.mark.parametrize(("route", "bundle", "decision"), [
    ("both", True, "abstain"),        # calibrated: HALT counts and abstains
    ("agnostic", True, "answer"),     # bundle lacks HALT: mean_logprob alone decides
    ("agnostic", False, "abstain"),   # no bundle: no model-agnostic detector left
    ("mean", False, "answer"),        # annotate: judged as configured
    ("closed", False, "abstain"),     # abstain: whatever the detectors say
    ("closed", True, "answer"),       # calibrated: the detectors decide
], ids=["calibrated", "model_agnostic_drops_halt", "model_agnostic_with_nothing_left",
        "annotate", "abstain", "abstain_calibrated"])
def test_the_profile_decides_what_an_uncalibrated_request_gets(
        fake_upstream, start_gateway, tmp_path, route, bundle, decision):
    if bundle:
        write_bundle(tmp_path / "bundles" / "fake", halt=route != "agnostic")
    url = start(fake_upstream, start_gateway, tmp_path)
    fake_upstream.script = Script(logprob=-0.01)  # confident: mean_logprob answers
    _, meta, resp = ask(url, route)
    assert meta["detectors"]["mean_logprob"]["verdict"] == "answer"
    assert meta["decision"] == decision, meta["reasons"]
    assert (resp.choices[0].message.refusal is not None) == (decision == "abstain")


def _wait_for(condition, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_a_changed_bundle_is_reloaded_and_a_bad_one_keeps_the_previous(
        fake_upstream, start_gateway, tmp_path):
    path = write_bundle(tmp_path / "bundles" / "fake", thresholds={"mean_logprob": 0.9})
    url = start(fake_upstream, start_gateway, tmp_path)
    fake_upstream.script = Script(logprob=RISKY)
    headers, meta, _ = ask(url, "mean")
    first = headers["x-hallgate-calibration"]
    assert meta["decision"] == "answer"

    write_bundle(path, thresholds={"mean_logprob": 0.5})
    headers, meta, _ = _wait_for(lambda: (r := ask(url, "mean"))[0][
        "x-hallgate-calibration"] != first and r)
    second = headers["x-hallgate-calibration"]
    assert meta["decision"] == "abstain"
    assert meta["detectors"]["mean_logprob"]["threshold"] == 0.5

    write_bundle(path, model="someone-else", thresholds={"mean_logprob": 0.9})
    _wait_for(lambda: 'hallgate_calibration_reloads_total{model="fake",result="refused"} 1.0'
              in httpx.get(f"{url}/metrics").text)
    headers, meta, _ = ask(url, "mean")
    assert headers["x-hallgate-calibration"] == second and meta["decision"] == "abstain"


def test_models_calibration_binds_a_bundle_by_path_under_the_upstream_name(
        fake_upstream, start_gateway, tmp_path):
    # declared for the upstream's own model name ("fake-model"), served as "fake"
    write_bundle(tmp_path / "elsewhere" / "custom", model="fake-model",
                 thresholds={"mean_logprob": 0.9})
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = fake_settings(fake_upstream, policy_file=str(policy),
                             calibration_dir=str(tmp_path / "bundles"))
    settings.models[0] = settings.models[0].model_copy(
        update={"calibration": str(tmp_path / "elsewhere" / "custom")})
    url = start_gateway(settings)
    fake_upstream.script = Script(logprob=RISKY)
    headers, meta, _ = ask(url, "mean")
    assert headers["x-hallgate-calibration"].startswith("custom@")
    assert meta["detectors"]["mean_logprob"]["threshold"] == 0.9
    assert meta["decision"] == "answer"
