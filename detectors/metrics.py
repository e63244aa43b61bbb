"""Metrics for hallucination detectors: pure numpy, no I/O.

AUROC and macro-F1 are HALT's (detectors/halt/metrics.py, scikit-learn); this module adds
what it lacks. Convention everywhere: ``scores`` are risks (higher = more likely hallucinated) and
``labels`` are 1 for a hallucinated answer, 0 for a correct one.

    auroc(scores, labels)                 P(score of a hallucination > score of a correct one)
    roc_curve(scores, labels)             (fpr, tpr) over every distinct threshold
    accuracy_rejection(scores, labels)    accuracy of the kept answers, rejecting riskiest first
    aurac / prr                           area under that curve; prediction rejection ratio
    macro_f1(predicted, labels)           mean F1 of the two classes
    wilson_upper / clopper_pearson_upper  one-sided upper bounds of a binomial rate
    bootstrap_interval(metric, s, y)      percentile bootstrap interval of any of the above
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from detectors.halt import metrics as halt_metrics
from detectors.halt.metrics import auroc  # noqa: F401  (re-exported: one AUROC for all)


def _as_arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()  # (N,)
    y = np.asarray(labels, dtype=np.int64).ravel()  # (N,) in {0, 1}
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite (drop items without a score first)")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (correct) or 1 (hallucinated)")
    return s, y


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates when flagging ``score >= t`` for every distinct t,
    from the highest t down, starting at (0, 0). Both arrays are (K + 1,)."""
    s, y = _as_arrays(scores, labels)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.diff(s) != 0, True]  # (N,) end of each run of equal scores
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(1 - y)[last_of_tie]
    n1, n0 = max(int(y.sum()), 1), max(len(y) - int(y.sum()), 1)
    return np.r_[0.0, fp / n0], np.r_[0.0, tp / n1]


def accuracy_rejection(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy of the answers kept after rejecting the k riskiest, k = 0 .. N−1.

    Returns (rejection_rate, accuracy), both (N,): rejection_rate[k] = k / N. Ties in the
    score are broken by averaging: within a run of equal scores the rejected ones are an
    unordered subset, so the kept errors are counted in expectation.
    """
    s, y = _as_arrays(scores, labels)
    n = len(y)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    correct = 1.0 - _tie_averaged(s, y.astype(np.float64))  # (N,) riskiest first
    kept_correct = correct[::-1].cumsum()[::-1]  # (N,) correct among items k..N−1
    kept = np.arange(n, 0, -1, dtype=np.float64)  # (N,) N − k
    return np.arange(n) / n, kept_correct / kept


def _tie_averaged(s: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` sorted by descending score, each replaced by the mean of its tie group."""
    order = np.argsort(-s, kind="stable")
    s, v = s[order], values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]  # (G,) first index of a group
    means = np.add.reduceat(v, starts) / np.diff(np.r_[starts, len(v)])  # (G,)
    return np.repeat(means, np.diff(np.r_[starts, len(v)]))


def aurac(scores, labels) -> float:
    """Area under the accuracy-rejection curve: AURAC = (1/N) Σ_{k=0}^{N−1} acc(k), acc(k)
    the accuracy of the N − k least risky answers (a step-function integral over the
    rejection rate). A random score gives the base accuracy; a perfect one the most."""
    _, acc = accuracy_rejection(scores, labels)
    return float(acc.mean()) if len(acc) else float("nan")


def prr(scores, labels) -> float:
    """Prediction rejection ratio (Malinin et al. 2017):
    PRR = (AURAC_score − AURAC_random) / (AURAC_oracle − AURAC_random), where random keeps the
    base accuracy at every rejection rate and the oracle rejects all errors first.
    1 for a perfect score, about 0 for a random one, negative when worse than random.
    NaN when every answer is right or every answer is wrong (nothing to rank)."""
    s, y = _as_arrays(scores, labels)
    if y.sum() == 0 or y.sum() == len(y):
        return float("nan")
    random = 1.0 - y.mean()
    oracle = aurac(y.astype(np.float64), y)
    return float((aurac(s, y) - random) / (oracle - random))


def macro_f1(predicted, labels) -> float:
    """Macro-F1 = ½ (F1 of class hallucinated + F1 of class correct) of 0/1 predictions
    (HALT's macro_f1 at threshold 0.5)."""
    flagged = np.asarray(predicted, dtype=np.float64)
    return halt_metrics.macro_f1(flagged, labels, threshold=0.5)


def best_macro_f1_threshold(scores, labels) -> float:
    """HALT's best_threshold: the midpoint between distinct scores that maximises
    macro-F1 when flagging ``score >= t``. Choose it on a validation split only."""
    return halt_metrics.best_threshold(scores, labels)[0]


def wilson_upper(errors: int, n: int, confidence: float = 0.95) -> float:
    """Upper end of the two-sided Wilson score interval at ``confidence``:
    (p̂ + z²/2n + z·sqrt(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n), z = Φ⁻¹(1 − (1−conf)/2).
    1.0 for n = 0."""
    if n <= 0:
        return 1.0
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    p = errors / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def clopper_pearson_upper(errors: int, n: int, delta: float) -> float:
    """One-sided exact binomial upper bound at confidence 1 − δ:
    the p with P(Bin(n, p) <= errors) = δ, i.e. the (1 − δ) quantile of
    Beta(errors + 1, n − errors). 1.0 when errors = n (or n = 0)."""
    if n <= 0 or errors >= n:
        return 1.0
    return float(stats.beta.ppf(1 - delta, errors + 1, n - errors))


def percentile(values, q: float) -> float | None:
    """The q-th percentile (linear interpolation), None for no values."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.percentile(v, q)) if v.size else None


def bootstrap_interval(metric, scores, labels, *, resamples: int = 1000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``metric(scores, labels)`` (Efron & Tibshirani
    1993, §13.3): resample the N items with replacement ``resamples`` times, recompute,
    take the (1 − level)/2 and (1 + level)/2 quantiles. Resamples with one class only
    (AUROC undefined) are skipped; None when fewer than half are usable."""
    s, y = _as_arrays(scores, labels)
    n = len(y)
    if n == 0 or y.min() == y.max():
        return None
    if metric is auroc:  # all resamples at once: the same draws, the same values
        values = bootstrap_aurocs(s, y, resamples=resamples, seed=seed)
        values = values[~np.isnan(values)]
        if len(values) < resamples // 2:
            return None
        lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)  # (N,)
        ys = y[idx]
        if ys.min() == ys.max():
            continue
        value = metric(s[idx], ys)
        if value is not None and math.isfinite(value):
            values.append(value)
    if len(values) < resamples // 2:
        return None
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_aurocs(scores, labels, *, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """AUROC of ``resamples`` bootstrap resamples of the N items at once: row r draws
    idx_r ~ U{0..N−1}^N (the same draws, in the same order, as ``resamples`` successive
    ``rng.integers(0, N, N)``) and takes the Mann-Whitney AUROC
    (Σ ranks of positives − n1(n1+1)/2) / (n1·n0) from average ranks within the row.
    NaN for a row with one class only. (R,)"""
    s, y = _as_arrays(scores, labels)
    n = len(y)
    if n == 0 or resamples <= 0:
        return np.zeros(0)
    idx = np.random.default_rng(seed).integers(0, n, (resamples, n))  # (R, N)
    return _row_aurocs(s[idx], y[idx])


def _row_aurocs(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC of each row of (R, N) scores and labels; NaN for a row with one
    class. (R,)"""
    ranks = stats.rankdata(s, axis=1)  # (R, N) ties averaged within each row
    n1 = y.sum(axis=1).astype(np.float64)  # (R,)
    n0 = y.shape[1] - n1
    with np.errstate(divide="ignore", invalid="ignore"):
        values = ((ranks * y).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where((n1 == 0) | (n0 == 0), np.nan, values)


def source_aurocs(scores, labels, sources) -> dict[str, float]:
    """The AUROC within each source that has both classes. {source: AUROC}"""
    s, y = _as_arrays(scores, labels)
    src = np.asarray(sources)
    return {str(name): auroc(s[src == name], y[src == name]) for name in np.unique(src)
            if 0 < y[src == name].sum() < (src == name).sum()}


def mean_source_auroc(scores, labels, sources) -> float | None:
    """The mean over sources of the AUROC within each source, over the sources that have
    both classes: a score that only tells the sources apart gets about 0.5 here, whatever
    its pooled AUROC (DESIGN.md, "Judging a detector honestly")."""
    values = list(source_aurocs(scores, labels, sources).values())
    return float(np.mean(values)) if values else None


def paired_source_bootstrap(score_sets: dict[str, np.ndarray], labels, sources, *,
                            resamples: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Bootstrap samples of :func:`mean_source_auroc` for several scores of the same items,
    resampled together (so differences between scores are paired) and within each source
    (so every source keeps its size). Resamples in which a source that has both classes
    loses one are skipped. {name: (R,) samples}."""
    y = np.asarray(labels, dtype=np.int64)
    src = np.asarray(sources)
    groups = [np.flatnonzero(src == name) for name in np.unique(src)
              if 0 < y[src == name].sum() < (src == name).sum()]
    rng = np.random.default_rng(seed)
    kept: list[list[np.ndarray]] = []
    for _ in range(resamples):
        picks = [g[rng.integers(0, len(g), len(g))] for g in groups]
        if not any(y[p].min() == y[p].max() for p in picks):
            kept.append(picks)
    if not kept or not groups:  # no source with both classes: every mean is undefined
        return {name: np.full(len(kept), np.nan) for name in score_sets}
    # the kept resamples' picks of each source, (R', n_g), scored row by row
    stacked = [np.stack([picks[i] for picks in kept]) for i in range(len(groups))]
    return {name: np.mean([_row_aurocs(np.asarray(s, dtype=np.float64)[p], y[p])
                           for p in stacked], axis=0)
            for name, s in score_sets.items()}
