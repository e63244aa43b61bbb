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


class RunningStats:
    """The scores of a growing answer, updated token by token (constant work per token):
    the running Σ_t log p_t, T, min_t log p_t and Σ_t H_t over the tokens with an entropy.
    :func:`scores` and :func:`raw_scores` of a whole answer are these sums read once."""

    def __init__(self) -> None:
        self.total = 0.0  # Σ_t log p_t (finite ones, clipped at 0)
        self.count = 0  # T: tokens with a finite logprob
        self.lowest = 0.0  # min_t log p_t
        self.entropy_total = 0.0  # Σ_t H_t
        self.entropy_count = 0

    def add(self, tokens: Sequence) -> RunningStats:
        """Fold in the next tokens (any accepted shape); returns self."""
        for item in tokens or ():
            chosen, logprob, top = token_fields(item)
            lp = _finite(logprob)
            if lp is not None:
                lp = min(lp, 0.0)
                self.lowest = lp if self.count == 0 else min(self.lowest, lp)
                self.total += lp
                self.count += 1
            h = token_entropy(chosen, logprob, top)
            if h is not None:
                self.entropy_total += h
                self.entropy_count += 1
        return self

    def _entropy(self) -> float:
        return self.entropy_total / self.entropy_count if self.entropy_count else 0.0

    def raw(self) -> dict[str, float] | None:
        """:func:`raw_scores` of the tokens so far; None without logprobs."""
        if not self.count:
            return None
        neg_mean = -self.total / self.count
        return {"neg_mean_logprob": neg_mean, "neg_min_logprob": -self.lowest,
                "mean_topk_entropy": self._entropy(),
                "sequence_probability": math.exp(-neg_mean), "n_tokens": self.count}

    def scores(self) -> dict[str, float] | None:
        """:func:`scores` of the tokens so far; None without logprobs."""
        raw = self.raw()
        if raw is None:
            return None
        return {"mean_logprob": squash(raw["neg_mean_logprob"]),
                "min_logprob": squash(raw["neg_min_logprob"]),
                "topk_entropy": raw["mean_topk_entropy"],
                "seq_prob": 1.0 - raw["sequence_probability"]}


def scores(tokens: Sequence) -> dict[str, float] | None:
    """Every score of an answer as a risk in [0, 1], ``{detector name: risk}``; None
    without logprobs."""
    return RunningStats().add(tokens).scores()


def raw_scores(tokens: Sequence) -> dict[str, float] | None:
    """The scores on their own scales: −mean and −min logprob (nats), mean normalised
    top-k entropy, sequence probability."""
    return RunningStats().add(tokens).raw()
