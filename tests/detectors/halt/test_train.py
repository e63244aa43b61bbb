import numpy as np

from detectors.halt import metrics
from detectors.halt.checkpoint import load_checkpoint, save_checkpoint
from detectors.halt.data import stratified_split, synthetic_examples
from detectors.halt.evaluate import evaluate_model
from detectors.halt.model import HaltConfig
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
