"""Scores -> numbers: AUROC, macro-F1 at a threshold, and the threshold that maximises
macro-F1 (chosen on validation only). Risk convention: higher = more likely hallucinated,
label 1 = hallucinated."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score


def auroc(risks: Sequence[float], labels: Sequence[int]) -> float:
    """NaN when only one class is present."""
    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(risks, dtype=np.float64)))


def macro_f1(risks: Sequence[float], labels: Sequence[int], threshold: float) -> float:
    """Mean F1 of both classes when flagging ``risk >= threshold`` as hallucinated."""
    predicted = (np.asarray(risks, dtype=np.float64) >= threshold).astype(int)
    return float(f1_score(np.asarray(labels), predicted, average="macro", labels=[0, 1],
                          zero_division=0))


def accuracy(risks: Sequence[float], labels: Sequence[int], threshold: float) -> float:
    predicted = np.asarray(risks, dtype=np.float64) >= threshold
    return float((predicted == np.asarray(labels).astype(bool)).mean())


def best_threshold(risks: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """(threshold, macro-F1) maximising macro-F1; candidates are midpoints between
    consecutive distinct risks (and the extremes), so the choice is not on a data point."""
    r = np.unique(np.asarray(risks, dtype=np.float64))
    candidates = np.concatenate([[r[0] - 1e-6], (r[1:] + r[:-1]) / 2, [r[-1] + 1e-6]])
    scores = [macro_f1(risks, labels, t) for t in candidates]
    i = int(np.argmax(scores))
    return float(candidates[i]), float(scores[i])


def summary(risks: Sequence[float], labels: Sequence[int], threshold: float) -> dict:
    """AUROC, macro-F1, accuracy and counts at ``threshold``."""
    y = np.asarray(labels)
    return {
        "n": int(len(y)),
        "n_hallucinated": int(y.sum()),
        "auroc": auroc(risks, labels),
        "macro_f1": macro_f1(risks, labels, threshold),
        "accuracy": accuracy(risks, labels, threshold),
    }
