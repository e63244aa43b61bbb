"""Record and replay on the real embedded model: one question with HALT, EDFL and the
semantic gate, recorded through llama.cpp, then replayed with no upstream under the same
policy (same scores) and under a learned-combiner policy (the combiner decides)."""

from __future__ import annotations

import json

import pytest

from evaluation.combiner import fit_combiner
from evaluation.evaluate import evaluate
from tests.policies.test_learned_combiner import synthetic_records

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
      semantic: {enabled: true, M: 2, m: 1, skeleton_samples: 1, max_tokens: 12,
                 entailment: lexical}
    COMBINE
    action: annotate
    fail_mode: open
"""
ITEM = {"id": "q-paris", "source": "toy", "kind": "text",
        "prompt": "What is the capital of France? Answer with a short phrase.",
        "gold": ["Paris"]}


def _records(directory) -> dict[str, dict]:
    rows = [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()]
    return {row["id"]: row for row in rows}


def test_record_on_the_embedded_model_then_replay_offline(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("COMBINE", "combine: {mode: any}"))
    dataset = tmp_path / "items.jsonl"
    dataset.write_text(json.dumps(ITEM) + "\n")
    kwargs = dict(limit=None, concurrency=1, base_url=None, model=None, max_tokens=16,
                  temperature=0.7, seed=0, data_dir=tmp_path, plots=False)
    evaluate(str(dataset), policy, "evaluate", tmp_path / "rec", command="record",
             record=True, **kwargs)
    (live,) = _records(tmp_path / "rec").values()
    assert live["hallgate"]["detectors"]["semantic"]["status"] == "ok"

    evaluate("", policy, "evaluate", tmp_path / "replay", command="replay",
             replay=tmp_path / "rec", **kwargs)
    (again,) = _records(tmp_path / "replay").values()
    assert again["answer"] == live["answer"]
    for name in ("halt", "edfl", "semantic", "neg_mean_logprob"):
        assert again["scores"][name] == pytest.approx(live["scores"][name], abs=1e-3), name

    fit_combiner(synthetic_records(300), ["halt", "neg_mean_logprob"]).save(
        tmp_path / "combiner.json")
    learned = tmp_path / "learned.yaml"
    learned.write_text(POLICY.replace(
        "COMBINE", "combine: {mode: learned, model: combiner.json, threshold: 0.5}"))
    evaluate("", learned, "evaluate", tmp_path / "learned", command="replay",
             replay=tmp_path / "rec", **kwargs)
    (decided,) = _records(tmp_path / "learned").values()
    assert decided["hallgate"]["combine"] == "learned"
    assert 0.0 <= decided["scores"]["combined"] <= 1.0
