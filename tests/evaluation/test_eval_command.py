"""`hallgate eval` end to end against a gateway on the fake upstream, and `calibrate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation.evaluate import EvalError, evaluate, route_access
from hallgate_cli import app
from policies import load_policy
from tests.conftest import fake_settings

POLICY = """\
version: 1
routes:
  - {name: evaluate, match: {header: evaluate}, profile: scored}
  - {name: enforcing, match: {header: enforcing}, profile: enforcing}
  - {name: default, default: true, profile: enforcing}
profiles:
  scored:
    detectors:
      halt: {enabled: false}
      edfl: {enabled: true, m: 2, n: 2}
      semantic: {enabled: true, M: 3, m: 1, entailment: lexical}
    action: annotate
    fail_mode: open
  enforcing:
    detectors: {halt: {enabled: false}, edfl: {enabled: true, m: 2, n: 2}}
"""

ITEMS = [
    {"id": "q-right", "source": "toy", "kind": "text", "prompt": "Capital of France?",
     "gold": ["Paris"]},
    {"id": "q-wrong", "source": "toy", "kind": "text", "prompt": "Capital of the UK?",
     "gold": ["London"]},
    {"id": "q-number", "source": "sums", "kind": "number", "prompt": "What is 1 + 2?",
     "gold": [3]},
]


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_route_access_needs_an_annotating_route(policy_file):
    policy = load_policy(policy_file)
    assert route_access(policy, "evaluate") == ({"x-hallgate-route": "evaluate"}, "")
    with pytest.raises(EvalError, match="action: annotate"):
        route_access(policy, "enforcing")
    with pytest.raises(EvalError, match="not in the policy"):
        route_access(policy, "nope")


def test_eval_writes_records_summary_report_and_plots(fake_upstream, start_gateway,
                                                       policy_file, tmp_path):
    audit = tmp_path / "audit.jsonl"
    url = start_gateway(fake_settings(fake_upstream, policy_file=str(policy_file),
                                      audit={"path": str(audit)}))
    dataset = tmp_path / "items.jsonl"
    dataset.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    out = tmp_path / "run"
    kwargs = dict(limit=None, concurrency=2, base_url=url, model=None, max_tokens=16,
                  temperature=0.7, seed=0, data_dir=tmp_path, command="test",
                  audit_log=audit)
    summary = evaluate(str(dataset), policy_file, "evaluate", out, **kwargs)

    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["q-number", "q-right", "q-wrong"]
    by_id = {r["id"]: r for r in records}
    assert by_id["q-right"]["correct"] and by_id["q-wrong"]["hallucinated"]
    assert by_id["q-number"]["hallucinated"]  # "Paris is ..." has no number
    first = by_id["q-right"]
    assert first["hallgate"]["returned"] == "answer"
    assert set(first["verdicts"]) >= {"edfl", "semantic", "combined"}
    assert first["scores"]["neg_mean_logprob"] == pytest.approx(0.05)  # fake: −0.05 a token
    # the audit log's full metadata: semantic entropy, the detectors' own calls
    assert first["audit_detail"] and first["scores"]["semantic_entropy"] is not None
    assert first["upstream_completions"] > 1 and first["latency_s"] > 0
    # the request asked the gateway for the answer's logprobs
    answer_calls = [b for b in fake_upstream.requests if b.get("top_logprobs") == 20]
    assert answer_calls and all(b["logprobs"] for b in answer_calls)

    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    overall = saved["overall"]
    assert overall["items"] == 3 and overall["hallucination_rate"] == pytest.approx(2 / 3)
    edfl = overall["scores"]["edfl"]
    assert edfl["n"] == 3 and {"auroc", "aurac", "prr", "macro_f1", "abstention_rate",
                               "hallucination_rate_answered", "wilson95_upper"} <= set(edfl)
    assert set(saved["by_source"]) == {"toy", "sums"}
    cost = saved["cost"]
    assert cost["requests"] == 3 and cost["latency_p95_s"] >= cost["latency_p50_s"] > 0
    assert saved["gateway_metrics"]["upstream_calls_per_request"] >= 1
    for name in ("report.md", "risk_coverage.png", "roc.png", "histograms.png"):
        assert (out / name).stat().st_size > 0

    # resumable: a second run asks nothing new
    calls = len(fake_upstream.requests)
    evaluate(str(dataset), policy_file, "evaluate", out, **kwargs, plots=False)
    assert len(fake_upstream.requests) == calls
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def synthetic_results(path, n: int = 600, seed: int = 0) -> None:
    """results.jsonl rows with a HALT risk whose P(hallucinated | s) = s."""
    rng = np.random.default_rng(seed)
    path.mkdir()
    with (path / "results.jsonl").open("w") as sink:
        for i in range(n):
            s = float(rng.random())
            sink.write(json.dumps({
                "id": f"x-{i:04d}", "source": "toy", "hallucinated": bool(rng.random() < s),
                "scores": {"halt": s}, "verdicts": {"halt": "answer", "combined": "answer"},
            }) + "\n")


CALIBRATE_POLICY = """\
version: 1
routes:
  - name: default
    default: true
    profile: gated
profiles:
  gated:
    extends: strict-factual
    detectors:
      halt:
        threshold: 0.9   # before calibration
      edfl: {enabled: false}
"""


def test_calibrate_writes_a_valid_policy_copy(tmp_path):
    results = tmp_path / "results"
    synthetic_results(results, n=2000)
    policy = tmp_path / "policy.yaml"
    policy.write_text(CALIBRATE_POLICY)
    out = tmp_path / "calibrated.yaml"
    run = CliRunner().invoke(app, ["calibrate", "--results", str(results), "--policy",
                                   str(policy), "--profile", "gated", "--target-risk", "0.15",
                                   "--delta", "0.1", "--out", str(out)])
    assert run.exit_code == 0, run.output
    threshold = load_policy(out).profiles["gated"].detectors.halt.threshold
    assert 0.1 < threshold <= 0.32 and "# before calibration" in out.read_text()
    report = json.loads((results / "calibration.json").read_text())
    assert report["threshold"] == threshold and report["calibration_items"] == 1000
    assert report["held_out"]["items"] == 1000 and 0 < report["held_out"]["coverage"] < 0.5
    assert policy.read_text() == CALIBRATE_POLICY  # the original is untouched


def test_calibrate_says_when_no_threshold_meets_the_target(tmp_path):
    results = tmp_path / "results"
    synthetic_results(results, n=60)
    policy = tmp_path / "policy.yaml"
    policy.write_text(CALIBRATE_POLICY)
    out = tmp_path / "calibrated.yaml"
    run = CliRunner().invoke(app, ["calibrate", "--results", str(results), "--policy",
                                   str(policy), "--profile", "gated", "--target-risk", "0.01",
                                   "--out", str(out)])
    assert run.exit_code == 1 and "no threshold meets the target" in run.output
    assert not out.exists()
