"""HALT input features (Shapiro et al., arXiv 2602.02888, Sec. 3.2, Eq. 4-13).

Input per answer: a ``(T, K)`` matrix of top-K log-probabilities, column 0 the selected
token, columns 1.. the alternatives in descending order (see :mod:`detectors.halt.adapter`).
Output: ``(T, 5 + K)`` = five engineered statistics followed by the K raw log-probs.

Everything is computed in float64 and the binary decision entropy (Eq. 12) is computed from
the log-odds with softplus, so a dominated alternative gives 0 instead of the reference's
float32 ``0 · log 0 = NaN`` (``pc`` clamps to ``1 - 1e-9``, which is 1.0 in float32).
The epsilons of the reference code (``EPS`` in the denominators and inside the logs of
Eq. 4, 7, 9) are kept, so values equal the reference's wherever those are finite.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-9  # the reference's epsilon in Eq. 4, 7, 8-9
N_STATS = 5  # avg_logp, rank_proxy, h_overall, h_alts, delta_h_dec
FEATURE_NAMES = ("avg_logp", "rank_proxy", "h_overall", "h_alts", "delta_h_dec")


def truncated_distribution(logprobs: np.ndarray) -> np.ndarray:
    """Eq. 4: p̃_t = softmax over the K reported log-probs (max-shifted). (T, K) -> (T, K)."""
    shifted = np.exp(logprobs - logprobs.max(axis=1, keepdims=True))  # (T, K)
    return shifted / (shifted.sum(axis=1, keepdims=True) + EPS)


def avg_logp(logprobs: np.ndarray) -> np.ndarray:
    """Eq. 5: mean of the K log-probs of each step. (T, K) -> (T,)."""
    return logprobs.mean(axis=1)


def rank_proxy(logprobs: np.ndarray) -> np.ndarray:
    """Eq. 6: 1 + number of alternatives more likely than the selected token. (T,)."""
    return 1.0 + (logprobs[:, 1:] > logprobs[:, :1]).sum(axis=1).astype(np.float64)


def entropy_overall(p_tilde: np.ndarray) -> np.ndarray:
    """Eq. 7: H_overall = -Σ_k p̃ log(p̃ + eps). (T, K) -> (T,)."""
    return -(p_tilde * np.log(p_tilde + EPS)).sum(axis=1)


def entropy_alternatives(p_tilde: np.ndarray) -> np.ndarray:
    """Eq. 8-9: entropy of the alternatives renormalised among themselves. (T, K) -> (T,)."""
    alts = p_tilde[:, 1:]  # (T, K-1)
    alts = alts / (alts.sum(axis=1, keepdims=True) + EPS)
    return -(alts * np.log(alts + EPS)).sum(axis=1)


def binary_decision_entropy(logprobs: np.ndarray) -> np.ndarray:
    """Eq. 10-12: entropy of pc = p(sel) / (p(sel) + p(best alternative)), in nats.

    With d = log p(sel) - log p(best alt), pc = σ(d), log pc = -softplus(-d) and
    log(1 - pc) = -softplus(d), so H = pc·softplus(-d) + (1 - pc)·softplus(d): finite for
    every d, exactly 0 in the limit where the reference computes 0·log 0.
    """
    d = logprobs[:, 0] - logprobs[:, 1:].max(axis=1)  # (T,)
    pc = 0.5 * (1.0 + np.tanh(0.5 * d))  # σ(d) without overflow
    return pc * np.logaddexp(0.0, -d) + (1.0 - pc) * np.logaddexp(0.0, d)


def temporal_delta(values: np.ndarray) -> np.ndarray:
    """Eq. 13: ΔH_t = H_t - H_{t-1}, with ΔH_1 = H_1. (T,) -> (T,)."""
    out = values.copy()
    out[1:] = values[1:] - values[:-1]
    return out


def engineered_features(logprobs: np.ndarray) -> np.ndarray:
    """The five statistics of Sec. 3.2 for every step. (T, K) -> (T, 5), float64."""
    lp = np.asarray(logprobs, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[1] < 2:
        raise ValueError(f"expected a (T, K>=2) matrix, got shape {lp.shape}")
    p_tilde = truncated_distribution(lp)
    return np.stack([
        avg_logp(lp),
        rank_proxy(lp),
        entropy_overall(p_tilde),
        entropy_alternatives(p_tilde),
        temporal_delta(binary_decision_entropy(lp)),
    ], axis=1)


def halt_input(logprobs: np.ndarray) -> np.ndarray:
    """Model input: [stats (5) || raw log-probs (K)] (Fig. 1). (T, K) -> (T, 5 + K) float32."""
    lp = np.asarray(logprobs, dtype=np.float64)
    return np.concatenate([engineered_features(lp), lp], axis=1).astype(np.float32)
