"""What the semantic gate returns (the convention of detectors/verdict.py)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from detectors.verdict import Verdict


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: +inf (ISR when B2T = 0) is written as null."""
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


@dataclass(frozen=True)
class MeaningCluster:
    """One meaning among the full prompt's sampled answers."""

    representative: str  # the first member (the one others were compared against)
    members: tuple[int, ...]  # indices into SemanticResult.answers
    count_mass: float  # |c| / M
    prob_mass: float | None  # length-normalised sequence-probability share; None w/o logprobs
    prior: float  # mean over skeletons of the smoothed prior S_k(c), OTHER kept
    refusal: bool  # most members decline to answer

    def to_dict(self) -> dict:
        out = asdict(self)
        out["members"] = list(self.members)
        out["prior"] = _finite(self.prior)
        return out


@dataclass(frozen=True)
class GateCost:
    """What one decision spent."""

    sampler_calls: int  # Sampler invocations (1 full + m skeletons + judge requests)
    samples: int  # answers drawn (M + m·skeleton_samples), judge replies excluded
    completion_tokens: int  # tokens of the drawn answers plus the judge's tokens
    sampling_seconds: float  # wall time of the concurrent sampling
    analysis_seconds: float  # clustering, projection and the budget
    entailment: dict  # JudgeCost.to_dict(): short-circuited pairs, backend pairs/calls, time

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SemanticResult:
    verdict: Verdict
    risk: float  # H_sem / log M of the configured mass (normalised semantic entropy), [0, 1]
    reasons: tuple[str, ...]  # why it abstained; empty when it answers
    chosen_answer: str  # the original answer if it is in the top meaning, else its medoid
    original_in_top: bool | None  # None when no original answer was given
    clusters: tuple[MeaningCluster, ...]
    top: int  # index of the top meaning in ``clusters``
    p_star: float  # top-meaning mass under the configured mass
    entropy_count: float  # H_sem with count masses, nats
    entropy_prob: float | None  # H_sem with probability masses, nats; None w/o logprobs
    prior_other: float  # mean OTHER mass of the skeleton priors (answers matching no meaning)
    top_priors: tuple[float, ...]  # S_k(top), Laplace, one per skeleton
    q_avg: float
    q_lo: float
    delta_bar: float  # nats; mode in ``delta_mode``
    delta_mode: str
    b2t: float  # nats; 0 when q_lo >= 1 - h*
    isr: float  # +inf when b2t = 0
    roh_bound: float  # 1 - p_max(Δ̄, q_avg)
    prior_sufficient: bool  # q_lo and P* both >= 1 - h*: answered without a budget
    top_is_refusal: bool
    backend: str
    answers: tuple[str, ...]  # the full prompt's sampled answers
    cost: GateCost

    @property
    def top_cluster(self) -> MeaningCluster:
        return self.clusters[self.top]

    def to_dict(self) -> dict:
        return {
            "detector": "semantic",
            "verdict": self.verdict.value,
            "risk": _finite(self.risk),
            "reasons": list(self.reasons),
            "chosen_answer": self.chosen_answer,
            "original_in_top": self.original_in_top,
            "p_star": _finite(self.p_star),
            "entropy_count": _finite(self.entropy_count),
            "entropy_prob": _finite(self.entropy_prob),
            "clusters": [c.to_dict() for c in self.clusters],
            "top": self.top,
            "prior_other": _finite(self.prior_other),
            "top_priors": [_finite(p) for p in self.top_priors],
            "q_avg": _finite(self.q_avg),
            "q_lo": _finite(self.q_lo),
            "delta_bar": _finite(self.delta_bar),
            "delta_mode": self.delta_mode,
            "b2t": _finite(self.b2t),
            "isr": _finite(self.isr),
            "roh_bound": _finite(self.roh_bound),
            "prior_sufficient": self.prior_sufficient,
            "top_is_refusal": self.top_is_refusal,
            "backend": self.backend,
            "answers": list(self.answers),
            "cost": self.cost.to_dict(),
        }
