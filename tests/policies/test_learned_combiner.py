"""combine: learned: the combiner (detectors/combiner.py), its fitting
(evaluation/combiner.py), its validation in policy files and its decision."""

from __future__ import annotations

import functools
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from detectors.combiner import LearnedCombiner, answer_features, linear_score
from detectors.metrics import auroc
from detectors.verdict import Verdict
from evaluation.combiner import combiner_risks, fit_combiner
from hallgate_cli import app
from policies import PolicyError, load_policy
from policies import decide as decide_


def synthetic_records(n: int = 800, seed: int = 0) -> list[dict]:
    """Two weak detectors whose noises are independent: together they rank better."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = bool(rng.random() < 0.7)
        rows.append({"id": f"r{i:04d}", "source": "ab"[i % 2], "hallucinated": y,
                     "scores": {"halt": float(y + rng.normal(0, 1.2)),
                                "neg_mean_logprob": float(y + rng.normal(0, 1.2)),
                                "answer_tokens": float(rng.integers(1, 40)),
                                "edfl": None},
                     "verdicts": {"halt": "answer", "combined": "answer"}})
    return rows


def test_linear_score_is_the_standardised_logit():
    x, mean, scale = np.array([2.0, 5.0]), np.array([1.0, 1.0]), np.array([2.0, 4.0])
    assert linear_score(x, mean, scale, np.array([0.5, -1.0]), 0.25) == pytest.approx(
        0.25 + 0.5 * 0.5 - 1.0 * 1.0)


def test_answer_features_from_logprob_entries():
    feats = answer_features([{"logprob": -0.5}, {"logprob": -1.5}, {"logprob": None}])
    assert feats == {"neg_mean_logprob": 1.0, "neg_min_logprob": 1.5, "answer_tokens": 2.0}
    assert answer_features(None)["neg_mean_logprob"] is None


def test_fitted_combiner_beats_each_input_and_round_trips(tmp_path):
    records = synthetic_records()
    fit, test = records[:400], records[400:]
    combiner = fit_combiner(fit, ["halt", "neg_mean_logprob", "answer_tokens"], seed=0)
    y = np.array([r["hallucinated"] for r in test])
    risks = combiner_risks(combiner, test)
    assert ((risks >= 0) & (risks <= 1)).all()
    single = max(auroc(np.array([r["scores"][k] for r in test]), y)
                 for k in ("halt", "neg_mean_logprob"))
    assert auroc(risks, y) > single + 0.03
    path = tmp_path / "c.json"
    combiner.save(path)
    again = LearnedCombiner.load(path)
    assert again == combiner and again.detectors() == {"halt"}
    # a missing feature takes its training mean instead of failing
    assert math.isfinite(again.risk({"halt": None, "neg_mean_logprob": 1.0}))


POLICY = """\
version: 1
routes:
  - {{name: default, default: true, profile: learned}}
profiles:
  learned:
    detectors: {{halt: {{enabled: {halt}}}, edfl: {{enabled: false}},
                semantic: {{enabled: false}}}}
    combine:
      mode: learned
      model: {model}
      threshold: 0.6
    fail_mode: {fail_mode}
"""


@pytest.fixture
def combiner_file(tmp_path):
    combiner = fit_combiner(synthetic_records(300), ["halt", "neg_mean_logprob"], seed=0)
    path = tmp_path / "models" / "combiner.json"
    path.parent.mkdir()
    combiner.save(path)
    return path


def _policy(tmp_path, **kw):
    values = {"halt": "true", "model": "models/combiner.json", "fail_mode": "open", **kw}
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(**values))
    return path


def test_a_learned_profile_loads_its_combiner_relative_to_the_policy(tmp_path, combiner_file):
    policy = load_policy(_policy(tmp_path))
    assert policy.combiner(policy.profiles["learned"]) == LearnedCombiner.load(combiner_file)


@pytest.mark.parametrize(("kw", "message"), [
    ({"model": "models/nope.json"}, "does not exist"),
    ({"halt": "false"}, "reads halt, which this profile does not enable"),
])
def test_bad_combiner_references_are_rejected_with_file_line_and_key(tmp_path, combiner_file,
                                                                     kw, message):
    with pytest.raises(PolicyError) as info:
        load_policy(_policy(tmp_path, **kw))
    text = str(info.value)
    assert message in text and "policy.yaml:10" in text and "combine.model" in text


def _halt(risk: float):
    return SimpleNamespace(verdict="answer", risk=risk,
                           to_dict=lambda: {"risk": risk, "verdict": "answer"})


def test_learned_decision_thresholds_the_calibrated_risk(tmp_path, combiner_file):
    policy = load_policy(_policy(tmp_path))
    profile = policy.profiles["learned"]
    decide = functools.partial(decide_, combiner=policy.combiner(profile))
    low = decide(profile, {"halt": _halt(0.0)}, answer={"neg_mean_logprob": -3.0})
    high = decide(profile, {"halt": _halt(0.99)}, answer={"neg_mean_logprob": 4.0})
    assert low.combine == "learned" and low.verdict is Verdict.ANSWER and low.risk < 0.6
    assert high.verdict is Verdict.ABSTAIN and high.risk >= 0.6
    failed = decide(profile, {"halt": RuntimeError("down")}, answer={"neg_mean_logprob": 0.0})
    assert failed.verdict in (Verdict.ANSWER, Verdict.ABSTAIN) and "imputed" in \
        failed.reasons[-1]


def test_fail_closed_abstains_when_a_read_detector_failed(tmp_path, combiner_file):
    policy = load_policy(_policy(tmp_path, fail_mode="closed"))
    profile = policy.profiles["learned"]
    decision = decide_(profile, {"halt": RuntimeError("down")}, answer={},
                       combiner=policy.combiner(profile))
    assert decision.verdict is Verdict.ABSTAIN and decision.risk == 1.0


def test_calibrate_fit_combiner_writes_a_policy_that_uses_it(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    with (results / "results.jsonl").open("w") as sink:
        for record in synthetic_records(1200, seed=3):
            sink.write(json.dumps(record) + "\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nroutes:\n  - {name: default, default: true, profile: p}\n"
                      "profiles:\n  p:\n    detectors: {edfl: {enabled: false}, "
                      "semantic: {enabled: false}}\n")
    out = tmp_path / "out" / "calibrated.yaml"
    out.parent.mkdir()
    combiner = tmp_path / "out" / "combiner.json"
    result = CliRunner().invoke(app, [
        "calibrate", "--results", str(results), "--policy", str(policy), "--profile", "p",
        "--out", str(out), "--fit-combiner", str(combiner), "--target-risk", "0.6",
        "--delta", "0.1"])
    assert result.exit_code == 0, result.output
    report = json.loads((results / "calibration.json").read_text())
    assert report["features"] == ["halt", "neg_mean_logprob", "answer_tokens"]
    assert report["held_out"]["auroc"] > 0.7
    written = load_policy(out)
    loaded = written.profiles["p"]
    assert loaded.combine.mode == "learned" and written.combiner(loaded) is not None
    assert loaded.combine.threshold == pytest.approx(report["threshold"])


def test_platt_calibration_keeps_the_logit_order_and_round_trips(tmp_path):
    combiner = LearnedCombiner(features=("halt",), impute=(0.5,), mean=(0.0,), scale=(1.0,),
                               coef=(2.0,), intercept=0.0, knots_x=(), knots_y=(),
                               fitted_on={}, platt=(1.5, -0.5))
    risks = [combiner.risk({"halt": h}) for h in (0.1, 0.2, 0.3)]
    assert risks == sorted(risks) and len(set(risks)) == 3  # strictly increasing, no ties
    assert risks[0] == pytest.approx(1 / (1 + math.exp(-(1.5 * 0.2 - 0.5))))
    combiner.save(tmp_path / "c.json")
    assert LearnedCombiner.load(tmp_path / "c.json") == combiner


def test_a_registered_detector_feeds_the_combiner_like_any_other(tmp_path):
    """A logprob detector's risk is a combiner feature under its name (the registry's
    default), read from its judgement like HALT's; a learned profile must enable it."""
    records = synthetic_records(300)
    for r in records:
        r["scores"]["topk_entropy"] = r["scores"].pop("neg_mean_logprob")
    combiner = fit_combiner(records, ["halt", "topk_entropy"], seed=0)
    assert combiner.detectors() == {"halt", "topk_entropy"}
    combiner.save(tmp_path / "c.json")
    text = POLICY.format(halt="true", model="c.json", fail_mode="open")
    (tmp_path / "policy.yaml").write_text(text)
    with pytest.raises(PolicyError, match="reads topk_entropy, which this profile does not"):
        load_policy(tmp_path / "policy.yaml")
    (tmp_path / "policy.yaml").write_text(text.replace(
        "edfl: {enabled: false}", "topk_entropy: {enabled: true}, edfl: {enabled: false}"))
    policy = load_policy(tmp_path / "policy.yaml")
    profile = policy.profiles["learned"]
    low = decide_(profile, {"halt": _halt(0.0), "topk_entropy": _halt(0.0)},
                  combiner=policy.combiner(profile))
    high = decide_(profile, {"halt": _halt(0.0), "topk_entropy": _halt(1.0)},
                   combiner=policy.combiner(profile))
    assert low.detectors["topk_entropy"].status == "ok"
    assert high.risk > low.risk  # the entropy's feature moves the combined risk
