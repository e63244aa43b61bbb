"""Evaluation of a HALT model against the single-pass baseline on the same items.

Baseline: risk = -(mean selected-token logprob of the answer), a strong single-pass
detector (DESIGN.md). Both detectors get their macro-F1 threshold from the validation
items only; AUROC, macro-F1 and accuracy are reported per source and overall.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectors.halt import metrics
from detectors.halt.data import Example
from detectors.halt.model import HaltModel
from detectors.halt.train import predict_risks


def baseline_risks(examples: Sequence[Example]) -> np.ndarray:
    """-mean token logprob of each answer. (N,)."""
    return -np.array([e.mean_logprob for e in examples], dtype=np.float64)


def per_source(risks: np.ndarray, examples: Sequence[Example], threshold: float) -> dict:
    """{"overall": {...}, source: {...}} metrics at ``threshold``."""
    labels = np.array([e.label for e in examples])
    sources = np.array([e.source for e in examples])
    out = {"overall": metrics.summary(risks, labels, threshold)}
    for source in sorted(set(sources)):
        mask = sources == source
        out[source] = metrics.summary(risks[mask], labels[mask], threshold)
    return out


def evaluate_model(model: HaltModel, threshold: float, test: Sequence[Example],
                   val: Sequence[Example] | None = None) -> dict:
    """HALT at its own threshold and the baseline at its validation threshold."""
    halt_risks = predict_risks(model, test)
    base_test = baseline_risks(test)
    if val:
        base_threshold, _ = metrics.best_threshold(baseline_risks(val), [e.label for e in val])
        threshold_from = "validation"
    else:  # no validation items: the baseline's threshold is tuned where it is measured
        base_threshold, _ = metrics.best_threshold(base_test, [e.label for e in test])
        threshold_from = "test (optimistic: no validation items given)"
    return {
        "halt": {"threshold": threshold, **per_source(halt_risks, test, threshold)},
        "mean_logprob_baseline": {"threshold": base_threshold, "threshold_from": threshold_from,
                                  **per_source(base_test, test, base_threshold)},
        "risks": {"halt": halt_risks.tolist(), "baseline": base_test.tolist(),
                  "labels": [e.label for e in test], "ids": [e.id for e in test]},
    }


def plot_roc(report: dict, path: str | Path, title: str = "HALT vs mean logprob") -> Path:
    """ROC curves of both detectors on the evaluated items, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    labels = report["risks"]["labels"]
    fig, ax = plt.subplots(figsize=(5, 5))
    for key, name in (("halt", "HALT"), ("baseline", "-mean logprob")):
        fpr, tpr, _ = roc_curve(labels, report["risks"][key])
        auc = report["halt" if key == "halt" else "mean_logprob_baseline"]["overall"]["auroc"]
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false-positive rate (correct answers flagged)")
    ax.set_ylabel("true-positive rate (hallucinations flagged)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
