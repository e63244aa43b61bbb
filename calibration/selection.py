"""The cheapest detector set that meets a target risk (pure functions, no I/O).

    cost = set_cost([(4.0, 6.0), (3.0, 168.0)])   # SetCost(7.0, 174.0); None if unrecorded
    best = cheapest_set(candidates)                # candidates at one (α, δ); None: none

A candidate is a set of detectors judged as one score: a single detector against its
threshold, or the learned combiner over the detectors it reads. Each carries its cost per
request and its Learn-then-Test operating point for (α, δ) (policies/calibration.py).

The rule (:func:`cheapest_set`): among the candidates whose certified threshold exists
(the Clopper-Pearson upper bound of the answered-hallucination rate is <= α at 1 − δ on
the calibration half), take the fewest upstream calls per request, then the fewest
completion tokens per request, then the highest coverage; a candidate whose cost was not
recorded ranks after every candidate whose cost is known.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SELECTION_RULE = ("cheapest certified set: fewest upstream calls per request, then fewest "
                  "completion tokens, then highest coverage (unknown cost ranks last)")


@dataclass(frozen=True)
class SetCost:
    upstream_calls: float  # Σ_d mean upstream calls of detector d per request
    completion_tokens: float  # Σ_d mean completion tokens of detector d per request


@dataclass(frozen=True)
class Candidate:
    detectors: tuple[str, ...]  # the detectors whose scores decide
    combine: str  # "single" (one detector's own risk) or "learned" (the combiner's)
    cost: SetCost | None  # None: a member's cost was not recorded
    threshold: float | None  # certified at (α, δ); None: no threshold meets α
    coverage: float  # fraction of calibration items answered at it
    upper_bound: float | None  # Clopper-Pearson upper bound at the threshold


def set_cost(costs: Sequence[tuple[float | None, float | None] | None]) -> SetCost | None:
    """The cost of running detectors together: c(S) = Σ_{d ∈ S} c_d, for upstream calls and
    completion tokens per request separately (each detector makes its own calls); None when
    any member's cost (or either of its numbers) was not recorded."""
    calls = tokens = 0.0
    for cost in costs:
        if cost is None or cost[0] is None or cost[1] is None:
            return None
        calls, tokens = calls + cost[0], tokens + cost[1]
    return SetCost(calls, tokens)


def _cost_key(cost: SetCost | None) -> tuple[float, float]:
    return (math.inf, math.inf) if cost is None else (cost.upstream_calls,
                                                       cost.completion_tokens)


def cheapest_set(candidates: Iterable[Candidate]) -> Candidate | None:
    """The rule of the module docstring: argmin over certified candidates of
    (upstream calls, completion tokens, −coverage); None when none is certified. Candidates
    equal on all three keep their given order (the first wins)."""
    certified = [c for c in candidates if c.threshold is not None]
    if not certified:
        return None
    return min(certified, key=lambda c: (*_cost_key(c.cost), -c.coverage))
