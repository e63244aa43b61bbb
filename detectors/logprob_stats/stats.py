"""The four one-number scores of an answer's token logprobs (pure functions).

Each token may be an OpenAI ``logprobs.content[]`` dict ``{"token", "logprob",
"top_logprobs": [{"token", "logprob"}]}``, a record of the collected JSONL files
``{"token", "logprob", "top": [[token, logprob], ...]}`` or a
:class:`detectors.sampling.TokenLogprob`. Non-finite logprobs are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from detectors.sampling import TokenLogprob


def token_fields(item) -> tuple[str, float | None, list[tuple[str, float]]]:
    """(token, its logprob, the reported alternatives) from any accepted token shape."""
    if isinstance(item, TokenLogprob):
        return item.token, item.logprob, list(item.top)
    if "top_logprobs" in item:
        top = [(a.get("token", ""), a.get("logprob")) for a in item["top_logprobs"] or ()]
    else:
        top = [(a[0], a[1]) for a in item.get("top") or ()]
    return item.get("token", ""), item.get("logprob"), top


def _finite(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def chosen_logprobs(tokens: Sequence) -> list[float]:
    """log p_t of each generated token (finite ones only)."""
    out = []
    for item in tokens or ():
        lp = _finite(token_fields(item)[1])
        if lp is not None:
            out.append(min(lp, 0.0))
    return out


def neg_mean_logprob(logprobs: Sequence[float]) -> float:
    """s = −(1/T) Σ_t log p_t (nats per token)."""
    return -sum(logprobs) / len(logprobs)


def neg_min_logprob(logprobs: Sequence[float]) -> float:
    """s = −min_t log p_t: the least likely token of the answer (nats)."""
    return -min(logprobs)


def sequence_probability(logprobs: Sequence[float]) -> float:
    """Length-normalised sequence probability exp((1/T) Σ_t log p_t), the geometric mean
    of the token probabilities (a monotone map of −mean logprob: the same ranking)."""
    return math.exp(-neg_mean_logprob(logprobs))


def token_entropy(chosen: str, logprob: float | None, top: Sequence[tuple[str, float]],
                  ) -> float | None:
    """Normalised entropy of one token's reported top-k distribution:
    H = −Σ_i p_i log p_i / log K over the K distinct reported tokens (the chosen one
    included), p_i = exp(lp_i) / Σ_j exp(lp_j). 0 when K < 2; None without logprobs."""
    entries: dict[str, float] = {}
    for token, lp in top:
        lp = _finite(lp)
        if lp is not None and token not in entries:
            entries[token] = lp
    lp = _finite(logprob)
    if lp is not None:
        entries.setdefault(chosen, lp)
    if not entries:
        return None
    if len(entries) < 2:
        return 0.0
    peak = max(entries.values())
    weights = [math.exp(v - peak) for v in entries.values()]
    total = sum(weights)
    h = -sum(w / total * math.log(w / total) for w in weights if w > 0)
    return min(max(h / math.log(len(entries)), 0.0), 1.0)


def mean_topk_entropy(tokens: Sequence) -> float | None:
    """(1/T) Σ_t H_t of :func:`token_entropy`, in [0, 1]; None without logprobs."""
    values = [h for item in tokens or () if (h := token_entropy(*token_fields(item)))
              is not None]
    return sum(values) / len(values) if values else None


def squash(s: float) -> float:
    """s / (1 + s): a non-negative score (nats) mapped monotonically into [0, 1)."""
    return s / (1.0 + s)


def scores(tokens: Sequence) -> dict[str, float] | None:
    """Every score of an answer as a risk in [0, 1], ``{detector name: risk}``; None
    without logprobs."""
    logprobs = chosen_logprobs(tokens)
    if not logprobs:
        return None
    neg_mean, neg_min = neg_mean_logprob(logprobs), neg_min_logprob(logprobs)
    entropy = mean_topk_entropy(tokens)
    return {"mean_logprob": squash(neg_mean), "min_logprob": squash(neg_min),
            "topk_entropy": 0.0 if entropy is None else entropy,
            "seq_prob": 1.0 - sequence_probability(logprobs)}


def raw_scores(tokens: Sequence) -> dict[str, float] | None:
    """The scores on their own scales: −mean and −min logprob (nats), mean normalised
    top-k entropy, sequence probability."""
    logprobs = chosen_logprobs(tokens)
    if not logprobs:
        return None
    entropy = mean_topk_entropy(tokens)
    return {"neg_mean_logprob": neg_mean_logprob(logprobs),
            "neg_min_logprob": neg_min_logprob(logprobs),
            "mean_topk_entropy": 0.0 if entropy is None else entropy,
            "sequence_probability": sequence_probability(logprobs), "n_tokens": len(logprobs)}
