"""Meaning clusters of sampled answers, their masses, and semantic entropy.

Greedy clustering as in Farquhar et al., Nature 630 (2024), Methods: each answer joins
the first cluster whose representative (first member) it is equivalent to, else it opens a
new cluster. Answers with equal NQ-normalised text are grouped before any model is asked.

    clusters = await cluster_answers(texts, judge)          # [[0, 2, 3], [1], ...]
    semantic_entropy(count_masses(clusters, len(texts)))    # H = -sum_c p(c) log p(c)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from detectors.sampling import Sample
from detectors.semantic.backend import Entailment
from detectors.semantic.entailment import EquivalenceJudge
from detectors.semantic.lexical import content_tokens, normalize, token_f1

_REFUSAL = re.compile(
    r"\b(i do ?nt know|i dont know|i do not know|not sure|cannot|can ?not|cant|unable to|"
    r"im sorry|i am sorry|no (?:information|idea|answer|data)|unknown|i have no|"
    r"as an ai|not possible to (?:know|say|determine)|no one knows)\b"
)


async def cluster_answers(texts: Sequence[str], judge: EquivalenceJudge) -> list[list[int]]:
    """Greedy bidirectional-entailment clustering; returns clusters as lists of indices.

    Normalised duplicates are grouped for free; each remaining distinct answer is then
    tested against every current representative in one batch.
    """
    groups: dict[str, list[int]] = {}
    for index, text in enumerate(texts):
        groups.setdefault(normalize(text), []).append(index)
    judge.cost.short_circuited += len(texts) - len(groups)
    await judge.prepare([texts[members[0]] for members in groups.values()])

    clusters: list[list[int]] = []
    for members in groups.values():
        text = texts[members[0]]
        same = await judge.equivalent([(text, texts[c[0]]) for c in clusters])
        target = next((c for c, hit in zip(clusters, same, strict=True) if hit), None)
        if target is None:
            clusters.append(list(members))
        else:
            target.extend(members)
    return [sorted(c) for c in clusters]


async def assign_to_clusters(
    texts: Sequence[str], representatives: Sequence[str], judge: EquivalenceJudge
) -> list[int | None]:
    """Project answers onto existing clusters: the first equivalent representative's
    index, or None (the OTHER bucket) when the answer matches no cluster. One batch."""
    if not texts or not representatives:
        return [None] * len(texts)
    await judge.prepare(list(dict.fromkeys([*representatives, *texts])))
    pairs = [(text, rep) for text in texts for rep in representatives]
    same = await judge.equivalent(pairs)
    width = len(representatives)
    rows = [same[i * width:(i + 1) * width] for i in range(len(texts))]
    return [next((j for j, hit in enumerate(row) if hit), None) for row in rows]


async def cluster_all_pairs(
    texts: Sequence[str], backend: Entailment, question: str
) -> list[list[int]]:
    """The naive reference: every ordered pair i != j through the backend, no lexical
    short-circuit, no deduplication, then greedy clustering on the full matrix.
    Used as the parity reference in tests and as the baseline in bench/semantic_cost.py."""
    n = len(texts)
    ordered = [(texts[i], texts[j]) for i in range(n) for j in range(n) if i != j]
    entails = iter((await backend.entails_batch(question, ordered)).entails)
    matrix = np.eye(n, dtype=bool)  # (M, M): matrix[i, j] = answer i entails answer j
    for i in range(n):
        for j in range(n):
            if i != j:
                matrix[i, j] = next(entails)
    return cluster_from_matrix(matrix & matrix.T)


def cluster_from_matrix(equivalent: np.ndarray) -> list[list[int]]:
    """Greedy clustering given a symmetric (M, M) equivalence matrix."""
    clusters: list[list[int]] = []
    for i in range(equivalent.shape[0]):
        target = next((c for c in clusters if equivalent[i, c[0]]), None)
        if target is None:
            clusters.append([i])
        else:
            target.append(i)
    return clusters


def count_masses(clusters: Sequence[Sequence[int]], total: int) -> np.ndarray:
    """p(c) = |c| / M, the discrete estimator of Farquhar et al. (Methods, eq. 4)."""
    return np.array([len(c) / total for c in clusters], dtype=np.float64)  # (K,)


def mean_token_logprob(sample: Sample) -> float | None:
    """Length-normalised log-likelihood (1/T) sum_t log p(token_t); None without logprobs."""
    if not sample.tokens:
        return None
    return sum(t.logprob for t in sample.tokens) / len(sample.tokens)


def probability_masses(
    clusters: Sequence[Sequence[int]], samples: Sequence[Sample]
) -> np.ndarray | None:
    """p(c) = sum_{s in c} exp(l_s) / sum_s exp(l_s), l_s the length-normalised
    log-likelihood (Farquhar et al., eq. 2-3, normalised over the sampled answers).
    None when any sample lacks token logprobs."""
    scores = [mean_token_logprob(s) for s in samples]
    if any(s is None for s in scores):
        return None
    log_lik = np.array(scores, dtype=np.float64)  # (M,)
    log_norm = np.logaddexp.reduce(log_lik)
    return np.array(
        [math.exp(np.logaddexp.reduce(log_lik[list(c)]) - log_norm) for c in clusters]
    )  # (K,)


def semantic_entropy(masses: np.ndarray) -> float:
    """H_sem = -sum_c p(c) log p(c), nats (Farquhar et al., eq. 3); 0·log 0 = 0."""
    p = masses[masses > 0]
    return float(-(p * np.log(p)).sum())


def is_refusal(text: str) -> bool:
    """Does the answer decline ("I don't know", "cannot", "not sure", ...)?"""
    return bool(_REFUSAL.search(normalize(text)))


def cluster_is_refusal(members: Sequence[str]) -> bool:
    """A cluster is refusal-like when most of its members are refusals."""
    return sum(is_refusal(m) for m in members) * 2 > len(members)


def medoid(members: Sequence[str], question: str = "") -> int:
    """Index of the member with the highest mean token F1 to the others: the answer
    closest to the cluster's centre (ties go to the earliest)."""
    tokens = [content_tokens(m, question) for m in members]
    scores = [sum(token_f1(a, b) for b in tokens) for a in tokens]
    return int(np.argmax(scores))
