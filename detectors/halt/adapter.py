"""OpenAI ``logprobs.content[]`` -> the ``(T, K)`` log-prob matrix HALT reads.

Column 0 is the selected token's logprob; columns 1..K-1 are the reported alternatives
*without* the selected token, in descending order. Accepted per token: a
:class:`detectors.sampling.TokenLogprob`, an OpenAI dict
``{"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}``, or a record of
the collected JSONL files ``{"token", "logprob", "top": [[token, logprob], ...]}``.

Upstreams differ: OpenAI gives at most 20 alternatives, llama.cpp 1 to 21 per token, and
the selected token may or may not be among them. Missing columns are filled with
``PAD_LOGPROB``; non-finite values (``-inf``, NaN) become ``PAD_LOGPROB`` too and every
value is clipped to ``[PAD_LOGPROB, 0]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from detectors.sampling import TokenLogprob

TOP_K = 20  # columns of the matrix: the selected token + 19 alternatives (OpenAI's max is 20)
# Floor for alternatives the upstream did not report: below anything a top-20 list holds in
# practice (the 20th alternative of the embedded model is around -8 to -15 nats), with
# negligible probability mass (e^-30 ≈ 1e-13), and still in the range LayerNorm sees.
PAD_LOGPROB = -30.0


@dataclass(frozen=True)
class LogprobMatrix:
    """One answer as HALT sees it."""

    values: np.ndarray  # (T, TOP_K) float64
    alternatives_seen: np.ndarray  # (T,) int, alternatives reported per token (selected excl.)

    @property
    def n_tokens(self) -> int:
        return int(self.values.shape[0])


def _clean(value) -> float:
    x = float(value) if value is not None else float("nan")
    if not math.isfinite(x):
        return PAD_LOGPROB if not x > 0 else 0.0
    return min(max(x, PAD_LOGPROB), 0.0)


def _token_fields(item) -> tuple[str, float, list[tuple[str, float]]]:
    """(token, logprob, alternatives as reported) from any accepted token shape."""
    if isinstance(item, TokenLogprob):
        return item.token, item.logprob, [(t, lp) for t, lp in item.top]
    if isinstance(item, dict):
        if "top_logprobs" in item:
            top = [(a.get("token", ""), a.get("logprob")) for a in item["top_logprobs"] or ()]
        else:
            top = [(a[0], a[1]) for a in item.get("top") or ()]
        return item.get("token", ""), item.get("logprob"), top
    raise TypeError(f"unsupported token logprob type: {type(item).__name__}")


def token_row(item, top_k: int = TOP_K) -> tuple[np.ndarray, int]:
    """One row of the matrix and the number of alternatives the upstream reported."""
    token, logprob, top = _token_fields(item)
    alternatives = list(top)
    for i, (alt_token, _) in enumerate(alternatives):
        if alt_token == token:  # drop the first entry for the selected token itself
            del alternatives[i]
            break
    alt_values = sorted((_clean(lp) for _, lp in alternatives), reverse=True)[: top_k - 1]
    row = np.full(top_k, PAD_LOGPROB, dtype=np.float64)
    row[0] = _clean(logprob)
    row[1: 1 + len(alt_values)] = alt_values
    return row, len(alternatives)


def logprob_matrix(tokens: Sequence, top_k: int = TOP_K) -> LogprobMatrix:
    """``tokens`` (any accepted shape, mixed is fine) -> (T, top_k) matrix; T may be 0.

    Same values as stacking :func:`token_row` (the reference, kept for the parity test),
    but the cleaning, clipping and sorting run once over the whole (T, K) array."""
    n = len(tokens)
    if n == 0:
        return LogprobMatrix(np.zeros((0, top_k)), np.zeros(0, dtype=np.int64))
    chosen = np.empty(n, dtype=np.float64)
    rows: list[list] = []
    seen = np.empty(n, dtype=np.int64)
    for t, item in enumerate(tokens):
        token, logprob, top = _token_fields(item)
        chosen[t] = np.nan if logprob is None else logprob
        values = [lp for _, lp in top]
        for i, (alt_token, _) in enumerate(top):
            if alt_token == token:  # drop the first entry for the selected token itself
                del values[i]
                break
        rows.append(values)
        seen[t] = len(values)
    width = max(top_k - 1, int(seen.max()))
    padded = [[np.nan if v is None else v for v in values] + [PAD_LOGPROB] * (width - len(values))
              for values in rows]
    return LogprobMatrix(sorted_clean(chosen, np.array(padded, dtype=np.float64), top_k), seen)


@njit(cache=True)
def clean(x: float) -> float:
    """:func:`_clean` for the compiled code: NaN and -inf -> PAD_LOGPROB, +inf -> 0, clip."""
    if np.isnan(x) or x < PAD_LOGPROB:
        return PAD_LOGPROB
    return min(x, 0.0)


@njit(cache=True)
def sorted_clean(chosen: np.ndarray, alts: np.ndarray, top_k: int) -> np.ndarray:
    """The matrix from the selected tokens' log-probs (T,) and the alternatives (T, W ≥
    top_k − 1, padded): column 0 the cleaned selected value, then the top_k − 1 largest
    cleaned alternatives in descending order. Compiled: for one short answer the dozen
    numpy calls this replaces cost more than the work. -> (T, top_k) float64."""
    T, W = alts.shape
    out = np.empty((T, top_k))
    row = np.empty(W)
    for t in range(T):
        out[t, 0] = clean(chosen[t])
        for i in range(W):
            row[i] = clean(alts[t, i])
        ordered = np.sort(row)
        for k in range(1, top_k):
            out[t, k] = ordered[W - k]
    return out
