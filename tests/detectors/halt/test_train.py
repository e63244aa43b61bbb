import gzip
import json

import numpy as np
import pytest

from detectors.halt import metrics
from detectors.halt.checkpoint import load_checkpoint, save_checkpoint
from detectors.halt.data import stratified_split, synthetic_examples, synthetic_logprobs
from detectors.halt.evaluate import evaluate_model
from detectors.halt.model import HaltConfig
from detectors.halt.pipeline import run_training
from detectors.halt.train import TrainConfig, predict_risks, train_halt

TINY = HaltConfig(proj_dim=16, hidden_dim=8, num_layers=1)


def test_tiny_synthetic_training_learns_and_round_trips(tmp_path):
    examples = synthetic_examples(60, seed=0, min_len=4, max_len=12)
    split = stratified_split(examples, seed=0)
    result = train_halt(split.train, split.val, TINY,
                        TrainConfig(max_epochs=3, batch_size=16, lr=3e-3, seed=0))
    assert 1 <= result.best_epoch <= len(result.history) <= 3
    report = evaluate_model(result.model, result.threshold, split.test, split.val)
    assert report["halt"]["overall"]["auroc"] > 0.8  # synthetic classes are far apart
    save_checkpoint(tmp_path, "tiny", result.model, result.threshold, {"upstream_model": "syn"})
    loaded = load_checkpoint(tmp_path / "tiny.pt")
    assert loaded.threshold == result.threshold and loaded.upstream_model == "syn"
    np.testing.assert_allclose(predict_risks(loaded.model, split.test),
                               predict_risks(result.model, split.test), atol=1e-6)


def test_split_is_seeded_disjoint_and_stratified():
    examples = synthetic_examples(200, seed=1, min_len=2, max_len=3)
    a, b = stratified_split(examples, seed=7), stratified_split(examples, seed=7)
    assert [e.id for e in a.test] == [e.id for e in b.test]
    ids = [e.id for part in (a.train, a.val, a.test) for e in part]
    assert sorted(ids) == sorted(e.id for e in examples)
    rate = np.mean([e.label for e in examples])
    assert abs(np.mean([e.label for e in a.train]) - rate) < 0.03


def test_threshold_search_maximises_macro_f1():
    risks = [0.1, 0.2, 0.35, 0.4, 0.8, 0.9]
    labels = [0, 0, 0, 1, 1, 1]
    threshold, f1 = metrics.best_threshold(risks, labels)
    assert 0.35 < threshold <= 0.4 and f1 == 1.0
    assert metrics.macro_f1(risks, labels, 0.5) < 1.0


def test_group_weights_make_every_source_and_label_weigh_the_same():
    import dataclasses

    from detectors.halt.train import group_weights

    base = synthetic_examples(1, seed=0)[0]
    groups = [("a", 1)] * 6 + [("a", 0)] * 2 + [("b", 1)] * 1 + [("b", 0)] * 3
    examples = [dataclasses.replace(base, id=str(i), source=s, label=y)
                for i, (s, y) in enumerate(groups)]
    w = group_weights(examples)
    sums = {g: w[[i for i, x in enumerate(groups) if x == g]].sum() for g in set(groups)}
    assert np.allclose(list(sums.values()), len(examples) / 4)  # N / G each


def _write_answers(path, n, seed, source):
    """n synthetic answers in the collected JSONL format, every third one correct."""
    rng = np.random.default_rng(seed)
    with gzip.open(path, "wt") as fh:
        for i in range(n):
            bad = bool(i % 3)
            matrix = synthetic_logprobs(int(rng.integers(3, 8)), bad, rng)
            tokens = [{"token": "t", "logprob": float(row[0]),
                       "top": [["t", float(row[0])]] + [[f"a{k}", float(v)]
                                                        for k, v in enumerate(row[1:])]}
                      for row in matrix]
            fh.write(json.dumps({"id": f"{source}-{seed}-{i}", "source": source,
                                 "hallucinated": bad, "tokens": tokens}) + "\n")


def test_source_balanced_training_with_a_separate_test_file(tmp_path):
    _write_answers(tmp_path / "train.jsonl.gz", 60, 0, "s1")
    _write_answers(tmp_path / "test.jsonl.gz", 24, 1, "s1")
    cfg = TrainConfig(max_epochs=2, batch_size=16, lr=3e-3, seed=0, balance_by_source=True,
                      select_by="source_auroc")
    summary = run_training([tmp_path / "train.jsonl.gz"], tmp_path, "t", "small", cfg, "syn",
                           "test", test_data=[tmp_path / "test.jsonl.gz"])
    meta = json.loads((tmp_path / "t.json").read_text())
    test_ids = set(meta["split"]["test_ids"])
    assert len(test_ids) == 24 and all(i.startswith("s1-1-") for i in test_ids)
    assert not set(meta["split"]["val_ids"]) & test_ids
    assert meta["train_config"]["balance_by_source"] is True
    assert 0.0 <= summary["test_source_auroc"] <= 1.0


def test_halt_compare_reports_per_source_means_and_paired_gains(tmp_path):
    from typer.testing import CliRunner

    from evaluation.halt_commands import app

    _write_answers(tmp_path / "a.jsonl.gz", 30, 2, "s1")
    _write_answers(tmp_path / "b.jsonl.gz", 30, 3, "s2")
    examples = synthetic_examples(40, seed=0, min_len=4, max_len=12)
    split = stratified_split(examples, seed=0)
    result = train_halt(split.train, split.val, TINY,
                        TrainConfig(max_epochs=2, batch_size=16, lr=3e-3, seed=0))
    save_checkpoint(tmp_path, "tiny", result.model, result.threshold, {"upstream_model": "s"})
    out = tmp_path / "compare.json"
    run = CliRunner().invoke(app, ["compare", "--checkpoint", str(tmp_path / "tiny.pt"),
                                   "--data", str(tmp_path / "a.jsonl.gz"), "--data",
                                   str(tmp_path / "b.jsonl.gz"), "--resamples", "50",
                                   "--out", str(out)])
    assert run.exit_code == 0, run.output
    report = json.loads(out.read_text())
    assert report["answers"] == 60 and set(report["sources"]) == {"s1", "s2"}
    tiny = report["scores"]["tiny"]
    assert set(tiny["per_source"]) == {"s1", "s2"}
    assert np.isclose(tiny["mean_of_sources"], np.mean(list(tiny["per_source"].values())))
    lo, hi = tiny["gain_ci"]
    assert lo <= hi and "gain_ci" not in report["scores"]["-mean logprob"]


@pytest.mark.parametrize("seed", range(20))
def test_best_threshold_equals_macro_f1_at_every_candidate(seed):
    """The vectorised search against the loop it replaces: macro_f1 at every midpoint."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 150))
    risks = rng.random(n).round(int(rng.integers(1, 4)))  # ties on purpose
    labels = (rng.random(n) < rng.random()).astype(int)
    r = np.unique(risks)
    candidates = np.concatenate([[r[0] - 1e-6], (r[1:] + r[:-1]) / 2, [r[-1] + 1e-6]])
    loop = [metrics.macro_f1(risks, labels, t) for t in candidates]
    threshold, f1 = metrics.best_threshold(risks, labels)
    assert threshold == pytest.approx(candidates[int(np.argmax(loop))])
    assert f1 == pytest.approx(max(loop))
