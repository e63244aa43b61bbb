"""Skeleton priors over meaning clusters: the semantic-specific part of the budget.

Skeleton answers are projected onto the full prompt's K clusters plus an OTHER bucket
(column K) that keeps its mass: a skeleton whose answers match no full-prompt meaning
lowers the prior of every cluster. (The public toolkit renormalised over the matched
clusters only, so with a single full-prompt cluster every prior became 1, whatever the
skeletons said.)

The Bernoulli arithmetic (KL, q_lo with floor, clipped log ratios, B2T, ISR, p_max) is
``detectors.edfl.budget``'s; only the multi-class pieces live here.

    counts = skeleton_counts(assignments, n_clusters=K)    # (m, K + 1)
    priors = top_meaning_priors(counts, top)               # S_k(top), Laplace, (m,)
    dists = smoothed_distributions(counts, alpha=0.5)      # (m, K + 1), rows sum to 1
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.edfl.budget import laplace_estimate


def skeleton_counts(assignments: Sequence[Sequence[int | None]], n_clusters: int) -> np.ndarray:
    """Counts per skeleton and class, (m, K + 1); column K is OTHER (no cluster matched).

    ``assignments[k][i]`` is the cluster index of skeleton k's answer i, or None.
    """
    counts = np.zeros((len(assignments), n_clusters + 1), dtype=np.float64)  # (m, K+1)
    for k, row in enumerate(assignments):
        for cluster in row:
            counts[k, n_clusters if cluster is None else cluster] += 1
    return counts


def top_meaning_priors(counts: np.ndarray, top: int) -> list[float]:
    """S_k(top) = (c_k,top + 1) / (n_k + 2): Laplace estimate of "skeleton k gives the top
    meaning" against everything else, OTHER included, so no zero count decides."""
    totals = counts.sum(axis=1)  # (m,)
    return [laplace_estimate(int(c), int(n)) for c, n in zip(counts[:, top], totals, strict=True)]


def smoothed_distributions(counts: np.ndarray, alpha: float) -> np.ndarray:
    """S_k(j) = (c_kj + α) / (n_k + α (K + 1)) over the K clusters and OTHER, (m, K+1)."""
    if alpha <= 0:
        raise ValueError("alpha must be > 0 so that every class keeps some mass")
    classes = counts.shape[1]
    return (counts + alpha) / (counts.sum(axis=1, keepdims=True) + alpha * classes)


def categorical_kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) = Σ_j p_j log(p_j / q_j), nats, with 0·log 0 = 0; q must be > 0 where p is."""
    support = p > 0
    return float((p[support] * np.log(p[support] / q[support])).sum())


def delta_bar_kl(posterior: np.ndarray, priors: np.ndarray, clip: float) -> float:
    """Δ̄ = (1/m) Σ_k min(KL(P ‖ S_k), B), multi-class over the K clusters and OTHER.

    ``posterior`` (K,) is the full prompt's cluster masses (its OTHER mass is 0 by
    construction); ``priors`` (m, K+1) the smoothed skeleton distributions.
    """
    full = np.append(posterior, 0.0)  # (K+1,)
    return float(np.mean([min(categorical_kl(full, row), clip) for row in priors]))
