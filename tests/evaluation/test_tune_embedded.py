"""`hallgate tune` live on the real embedded model: four questions recorded through
SmolLM2 on llama.cpp, then a loadable bundle for that model (too few answers of each class
to train HALT: the bundle says `halt: null` and the command says why); a rerun asks nothing."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from calibration.bundle import load_bundle
from hallgate_cli import app
from proxy.config import EMBEDDED_MODEL_NAME

pytestmark = pytest.mark.model

POLICY = """\
version: 1
routes:
  - {name: evaluate, default: true, profile: scored}
profiles:
  scored:
    detectors:
      halt: {enabled: true}
      edfl: {enabled: true, m: 1, n: 2}
    action: annotate
    fail_mode: open
"""
QUESTIONS = [
    {"prompt": "What is the capital of France? Answer with a short phrase.",
     "gold": ["Paris"]},
    {"prompt": "Who wrote Romeo and Juliet? Answer with a short phrase.",
     "gold": ["Shakespeare"]},
    {"prompt": "What is 7 + 5? Answer with a number.", "gold": [12]},
    {"prompt": "What is the chemical symbol for gold? Answer with a short phrase.",
     "gold": ["Au"]},
]


def test_tune_records_the_embedded_model_and_writes_its_bundle(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    out = tmp_path / "bundles" / "smollm2"
    args = ["tune", "--model", EMBEDDED_MODEL_NAME, "--out", str(out), "--data", str(data),
            "--policy", str(policy), "--max-tokens", "12", "--concurrency", "1",
            "--budget-calls", "100", "--yes"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert f"4 to record through {EMBEDDED_MODEL_NAME}" in done.output
    assert "HALT is not trained" in done.output

    bundle = load_bundle(out, names={EMBEDDED_MODEL_NAME})
    assert bundle.model == EMBEDDED_MODEL_NAME and bundle.manifest.halt is None
    assert bundle.manifest.data.items == 4
    assert bundle.answer_threshold("mean_logprob") is not None
    assert EMBEDDED_MODEL_NAME in (out / "REPORT.md").read_text()
    recording = tmp_path / "bundles" / "smollm2.recording"
    results = [json.loads(line) for line in
               (recording / "results.jsonl").read_text().splitlines()]
    assert len(results) == 4
    assert all(r["hallgate"]["detectors"]["edfl"]["status"] == "ok" for r in results)

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "4 already recorded" in again.output and "nothing to record" in again.output
