"""EDFL / ISR / Bits-to-Trust arithmetic, as small pure functions. All logs are natural (nats).

Notation (Compression Failure in LLMs, arXiv 2509.11208, and the toolkit overview):

- ``P``   = P(event | full prompt), the posterior of the gated event (here: ANSWER);
- ``S_k`` = P(event | skeleton k), the prior under a prompt that carries less information;
- ``q_avg = mean_k S_k`` and ``q_lo = max(min_k S_k, q_floor)``;
- ``Δ̄ = mean_k clip(log P − log S_k, −B, B)``, the information budget;
- ``B2T = KL(Ber(1 − h*) ‖ Ber(q_lo))``, zero when ``q_lo ≥ 1 − h*`` (prior already sufficient);
- ``ISR = Δ̄ / B2T`` (``inf`` when ``B2T = 0``);
- ``RoH ≤ 1 − p_max(Δ̄, q_avg)`` where ``p_max`` is the largest ``p ≥ q_avg`` with
  ``KL(Ber(p) ‖ Ber(q_avg)) ≤ Δ̄`` (EDFL: the budget bounds how far the prior can be lifted).

Nothing here knows about prompts, samplers or models; ``detectors/semantic`` reuses it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

PROB_EPS = 1e-12  # keeps log() finite at the ends of [0, 1]; far below any floor we use


def _clamp_prob(p: float, eps: float = PROB_EPS) -> float:
    return min(max(float(p), eps), 1.0 - eps)


def bernoulli_kl(p: float, q: float) -> float:
    """KL(Ber(p) ‖ Ber(q)) = p·log(p/q) + (1−p)·log((1−p)/(1−q)), in nats.

    Uses the convention 0·log 0 = 0 for ``p`` and clamps ``q`` into (0, 1) so that the
    result is always finite. Non-negative; zero iff ``p == q``.
    """
    if not (0.0 <= p <= 1.0 and 0.0 <= q <= 1.0):
        raise ValueError(f"probabilities must lie in [0, 1], got p={p}, q={q}")
    q = _clamp_prob(q)
    kl = 0.0
    if p > 0.0:
        kl += p * math.log(p / q)
    if p < 1.0:
        kl += (1.0 - p) * math.log((1.0 - p) / (1.0 - q))
    return max(kl, 0.0)


def laplace_estimate(k: int, n: int) -> float:
    """Laplace (add-one) estimate of a Bernoulli rate: (k + 1) / (n + 2).

    Used for sampled decisions so that no count of zero (or of n) becomes a probability of
    exactly 0 (or 1), which would send log P − log S_k to ±∞.
    """
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    return (k + 1.0) / (n + 2.0)


def q_avg(priors: Sequence[float]) -> float:
    """q_avg = (1/m) Σ_k S_k, the mean skeleton prior."""
    if len(priors) == 0:
        raise ValueError("need at least one skeleton prior")
    return float(sum(priors)) / len(priors)


def q_lo(priors: Sequence[float], floor: float) -> float:
    """q_lo = max(min_k S_k, floor), the conservative (lowest) skeleton prior.

    The floor stops a single skeleton whose estimate underflowed (top-k logprob truncation,
    sampling noise) from making B2T arbitrarily large.
    """
    if len(priors) == 0:
        raise ValueError("need at least one skeleton prior")
    return max(float(min(priors)), float(floor))


def clipped_log_ratio(posterior: float, prior: float, clip: float, floor: float) -> float:
    """clip(log P − log S, −B, B) with P and S floored into [floor, 1 − floor] first."""
    lp = math.log(min(max(posterior, floor), 1.0 - floor))
    ls = math.log(min(max(prior, floor), 1.0 - floor))
    return min(max(lp - ls, -clip), clip)


def delta_bar(posterior: float, priors: Sequence[float], clip: float, floor: float) -> float:
    """Δ̄ = (1/m) Σ_k clip(log P − log S_k, −B, B), the mean information budget in nats.

    Probabilities are floored at ``floor`` before the log, so |log P − log S_k| is bounded
    by log(1/floor) whatever the estimator returned; the clip ``B`` then only bounds it
    further. A zero count therefore cannot put B into the mean.
    """
    if len(priors) == 0:
        raise ValueError("need at least one skeleton prior")
    ratios = [clipped_log_ratio(posterior, s, clip, floor) for s in priors]
    return sum(ratios) / len(ratios)


def bits_to_trust(q_lo_value: float, h_star: float) -> float:
    """B2T = KL(Ber(1 − h*) ‖ Ber(q_lo)), and 0 when q_lo ≥ 1 − h*.

    The information needed to lift the conservative prior q_lo to the target reliability
    1 − h*. When the prior already meets the target nothing more is needed (the reference
    toolkit kept a positive KL here, so confident models abstained).
    """
    if not 0.0 < h_star < 1.0:
        raise ValueError(f"h_star must lie in (0, 1), got {h_star}")
    target = 1.0 - h_star
    if q_lo_value >= target:
        return 0.0
    return bernoulli_kl(target, q_lo_value)


def information_sufficiency_ratio(delta_bar_value: float, b2t: float) -> float:
    """ISR = Δ̄ / B2T; +inf when B2T = 0 (no information needed)."""
    if b2t <= 0.0:
        return math.inf
    return delta_bar_value / b2t


def p_max(delta_bar_value: float, prior: float, *, tol: float = 1e-10) -> float:
    """p_max(Δ̄, q) = max { p ∈ [q, 1] : KL(Ber(p) ‖ Ber(q)) ≤ Δ̄ }, by bisection.

    KL(Ber(p) ‖ Ber(q)) is increasing in p on [q, 1], so the set is an interval [q, p_max].
    Δ̄ ≤ 0 gives p_max = q (no lift); a budget at least KL(Ber(1) ‖ Ber(q)) = −log q gives 1.
    """
    q = _clamp_prob(prior)
    if delta_bar_value <= 0.0:
        return q
    if bernoulli_kl(1.0, q) <= delta_bar_value:
        return 1.0
    lo, hi = q, 1.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if bernoulli_kl(mid, q) <= delta_bar_value:
            lo = mid
        else:
            hi = mid
    return lo


def roh_upper_bound(delta_bar_value: float, q_avg_value: float) -> float:
    """RoH ≤ 1 − p_max(Δ̄, q_avg): the EDFL bound on the risk of hallucination, in [0, 1]."""
    return min(max(1.0 - p_max(delta_bar_value, q_avg_value), 0.0), 1.0)


def should_answer(
    posterior: float,
    delta_bar_value: float,
    b2t: float,
    isr: float,
    *,
    isr_threshold: float,
    margin: float,
) -> bool:
    """The EDFL rule: ANSWER iff P > 1/2 and (B2T = 0 or (ISR ≥ thr and Δ̄ ≥ B2T + margin)).

    - ``P > 1/2``: the full prompt itself must favour answering; the reference toolkit
      ignored which label the full prompt chose, so a refusing prompt could pass.
    - ``B2T = 0``: the conservative prior already meets 1 − h*; no budget is required
      (the prior-sufficiency shortcut), so a model that always knows does not abstain.
    """
    if posterior <= 0.5:
        return False
    if b2t <= 0.0:
        return True
    return isr >= isr_threshold and delta_bar_value >= b2t + margin
