"""The one place where detector results become ANSWER or ABSTAIN.

    decision = decide(profile, {"halt": judgement, "edfl": TimeoutError(...)},
                      route="strict")
    decision.verdict     # the decision: the profile's judgement (ABSTAIN)
    decision.returned    # what the gateway returned after the action (annotate: ANSWER)
    decision.reasons     # ("halt: risk 0.83 >= 0.61", "edfl: error (TimeoutError) ...")
    decision.to_dict()   # the response's JSON-safe `hallgate` object

"Decision" means the judgement everywhere (the `x-hallgate-decision` header, the body's
``hallgate.decision``, the metric, the audit record, the trace); what the client got is
``returned`` (`x-hallgate-returned`). A result is a detector's
:class:`detectors.protocol.Judgement` or the exception it raised
(:class:`detectors.protocol.MissingLogprobs` when the upstream gave no logprobs). The
profile's fail mode decides what an exception means: ``open`` leaves the detector out,
``closed`` counts it as an abstention (risk 1 in the weighted score). Results of
detectors the profile does not enable are reported but never counted; an enabled
detector without a result counts as an error.

Combination (``profile.combine.mode``):
    any       ABSTAIN iff a counted detector abstains.
    weighted  r = Σ_d w_d·risk_d / Σ_d w_d over the counted detectors; ABSTAIN iff r >= thr.
    learned   r = the combiner's calibrated P(hallucinated) from every detector's score and
              the answer's logprob features (detectors/combiner.py); ABSTAIN iff r >= thr.
With nothing counted (all failed open, or none enabled) the verdict is ANSWER.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from detectors.combiner import detector_features
from detectors.protocol import Judgement, MissingLogprobs
from detectors.verdict import Verdict
from policies.schema import Profile

Result = Judgement | BaseException  # what a detector's slot in ``results`` holds


@dataclass(frozen=True)
class Escalation:
    """The hard rule moved this request from its route's profile to a stricter one."""

    from_profile: str  # the route's own profile, e.g. "code-creative"
    reason: str  # e.g. "prompt names 'Carlos Santana' together with '1985'"


Status = Literal["ok", "error", "missing_logprobs"]


_SHORT_KEYS = ("reason", "reasons", "error", "threshold", "threshold_source", "streamed_state")


@dataclass(frozen=True)
class DetectorScore:
    """One detector's part in a decision."""

    name: str
    status: Status
    counted: bool  # took part in the combination (enabled, and ok or failed closed)
    verdict: Verdict | None  # None unless status is ok
    risk: float | None  # in [0, 1]; None unless status is ok
    detail: dict = field(default_factory=dict)  # the result's to_dict(), or the error

    def to_dict(self, detail: bool = True) -> dict:
        """JSON-safe; ``detail=False`` keeps only status, verdict, risk, the threshold with
        its source, and reasons."""
        extra = self.detail if detail else {
            k: v for k, v in self.detail.items() if k in _SHORT_KEYS}
        return _json_safe({
            **extra,
            "status": self.status,
            "counted": self.counted,
            "verdict": self.verdict.value if self.verdict else None,
            "risk": self.risk,
        })


@dataclass(frozen=True)
class Decision:
    verdict: Verdict  # the profile's judgement
    returned: Verdict  # what the client gets: the judgement under `abstain`, else ANSWER
    action: str  # abstain | annotate | shadow
    risk: float | None  # weighted risk (weighted) or highest counted risk (any)
    reasons: tuple[str, ...]
    detectors: Mapping[str, DetectorScore]
    profile: str  # the profile that judged (strict-factual after an escalation)
    route: str | None
    combine: str  # any | weighted
    fail_mode: str  # open | closed
    escalation: Escalation | None = None

    @property
    def abstained(self) -> bool:
        """The client gets the abstention text instead of the answer."""
        return self.returned is Verdict.ABSTAIN

    @property
    def escalated_by_hard_rule(self) -> bool:
        return self.escalation is not None

    @property
    def shown_to_client(self) -> bool:
        """Whether the response carries the decision (`shadow` only logs it)."""
        return self.action != "shadow"

    def response_headers(self) -> dict[str, str]:
        """``x-hallgate-*`` response headers: ``-decision`` (the judgement) and ``-risk``
        unless the action is shadow (which only logs them), ``-returned`` always."""
        headers = {
            "x-hallgate-returned": self.returned.value,
            "x-hallgate-route": self.route or "",
            "x-hallgate-profile": self.profile,
            "x-hallgate-escalated": "true" if self.escalation else "false",
        }
        if self.shown_to_client:
            headers["x-hallgate-decision"] = self.verdict.value
            if self.risk is not None and math.isfinite(self.risk):
                headers["x-hallgate-risk"] = f"{self.risk:.4f}"
        return headers

    @property
    def scores(self) -> dict[str, dict]:
        return {name: score.to_dict() for name, score in self.detectors.items()}

    def to_dict(self, detail: bool = True) -> dict:
        """The `hallgate` object of the response body: JSON-safe, no NaN or infinity.

        ``detail=False`` leaves out each detector's own metadata (EDFL's skeleton texts,
        the semantic gate's sampled answers, ...) but keeps its status, verdict and risk.
        """
        return _json_safe({
            "decision": self.verdict.value,
            "returned": self.returned.value,
            "action": self.action,
            "route": self.route,
            "profile": self.profile,
            "combine": self.combine,
            "fail_mode": self.fail_mode,
            "risk": self.risk,
            "reasons": list(self.reasons),
            "escalated_by_hard_rule": self.escalated_by_hard_rule,
            "escalated_from": self.escalation.from_profile if self.escalation else None,
            "escalation_reason": self.escalation.reason if self.escalation else None,
            "detectors": {n: s.to_dict(detail) for n, s in self.detectors.items()},
        })


def decide(profile: Profile, results: Mapping[str, Result], *, route: str | None = None,
           escalation: Escalation | None = None,
           answer: Mapping[str, float | None] | None = None, combiner: Any = None,
           counting: tuple[str, ...] | None = None, combine: str | None = None) -> Decision:
    """Combine ``results`` (detector name -> Judgement or exception).

    ``answer``: the answer's own features (detectors.combiner.answer_features), which the
    learned combiner (``combiner``: the profile's, from ``Policy.combiner``) reads beside
    the detectors' scores. ``counting``: the detectors that may count (default: those the
    profile enables); ``combine``: another combine mode than the profile's (a stream cut by
    its prefix judge is decided by ``any``)."""
    enabled = profile.detectors.enabled() if counting is None else counting
    mode = combine or profile.combine.mode
    names = [*enabled, *(n for n in results if n not in enabled)]
    scores = {n: _score(n, results.get(n, _NO_RESULT), n in enabled, profile) for n in names}
    counted = [s for s in scores.values() if s.counted]
    reasons = [_score_reason(s, n in enabled) for n, s in scores.items()]
    if mode == "weighted":
        verdict, risk, why = _weighted(counted, profile)
    elif mode == "learned":
        if combiner is None:
            raise ValueError(f"profile '{profile.name}' combines 'learned' but no combiner "
                             "was given (Policy.combiner(profile))")
        verdict, risk, why = _learned(scores, profile, answer or {}, combiner)
    else:
        verdict, risk, why = _any(counted)
    reasons.append(why)
    returned = verdict if profile.action == "abstain" else Verdict.ANSWER
    return Decision(verdict=verdict, returned=returned, action=profile.action, risk=risk,
                    reasons=tuple(reasons), detectors=scores, profile=profile.name, route=route,
                    combine=mode, fail_mode=profile.fail_mode,
                    escalation=escalation)


def _learned(scores: Mapping[str, DetectorScore], profile: Profile,
             answer: Mapping[str, float | None], combiner: Any) -> tuple[Verdict, float, str]:
    """The combiner's calibrated risk against ``combine.threshold``. A detector it reads
    that failed: fail closed abstains (risk 1); fail open leaves the feature to the
    combiner's imputation (its training mean)."""
    failed = sorted(d for d in combiner.detectors()
                    if d not in scores or scores[d].status != "ok")
    if failed and profile.fail_mode == "closed":
        return Verdict.ABSTAIN, 1.0, f"learned: {', '.join(failed)} failed (fail closed)"
    details = {name: s.detail for name, s in scores.items() if s.status == "ok"}
    risk = combiner.risk({**detector_features(details), **answer})
    threshold = profile.combine.threshold
    verdict = Verdict.ABSTAIN if risk >= threshold else Verdict.ANSWER
    imputed = f" ({', '.join(failed)} imputed)" if failed else ""
    sign = ">=" if verdict is Verdict.ABSTAIN else "<"
    return verdict, risk, f"learned: risk {risk:.3f} {sign} {threshold:g}{imputed}"


_NO_RESULT = RuntimeError("no result: the detector was enabled but did not run")


def _score(name: str, result: Result, enabled: bool, profile: Profile) -> DetectorScore:
    counts_if_failed = enabled and profile.fail_mode == "closed"
    if isinstance(result, MissingLogprobs):
        return DetectorScore(name, "missing_logprobs", counts_if_failed, None, None,
                             {"error": str(result)})
    if isinstance(result, BaseException):
        detail = {"error": f"{type(result).__name__}: {result}"}
        return DetectorScore(name, "error", counts_if_failed, None, None, detail)
    try:
        verdict, risk = Verdict(result.verdict), float(result.risk)
        detail = dict(result.to_dict()) if hasattr(result, "to_dict") else {}
    except (AttributeError, TypeError, ValueError) as exc:
        detail = {"error": f"malformed result {type(result).__name__}: {exc}"}
        return DetectorScore(name, "error", counts_if_failed, None, None, detail)
    if not 0.0 <= risk <= 1.0:  # NaN included: a broken score is an error, not a number
        detail = {"error": f"risk {risk!r} outside [0, 1]"}
        return DetectorScore(name, "error", counts_if_failed, None, None, detail)
    return DetectorScore(name, "ok", enabled, verdict, risk, detail)


def _effective(score: DetectorScore) -> tuple[Verdict, float]:
    """A counted detector's vote: its own, or ABSTAIN at risk 1 when it failed closed."""
    if score.status == "ok":
        return score.verdict, score.risk  # type: ignore[return-value]
    return Verdict.ABSTAIN, 1.0


def _any(counted: list[DetectorScore]) -> tuple[Verdict, float | None, str]:
    if not counted:
        return Verdict.ANSWER, None, "answer: no detector could be counted"
    votes = [(s.name, *_effective(s)) for s in counted]
    abstainers = [name for name, verdict, _ in votes if verdict is Verdict.ABSTAIN]
    risk = max(r for _, _, r in votes)
    if abstainers:
        return Verdict.ABSTAIN, risk, f"abstain: {', '.join(abstainers)} abstained (any)"
    return Verdict.ANSWER, risk, "answer: no detector abstained (any)"


def _weighted(counted: list[DetectorScore], profile: Profile,
              ) -> tuple[Verdict, float | None, str]:
    """r = Σ w_d·risk_d / Σ w_d, abstain iff r >= threshold."""
    combine = profile.combine
    terms = [(s.name, combine.weight(s.name), _effective(s)[1]) for s in counted]
    total = sum(w for _, w, _ in terms)
    if total <= 0:
        return Verdict.ANSWER, None, "answer: no detector could be counted (weighted)"
    risk = sum(w * r for _, w, r in terms) / total
    parts = ", ".join(f"{name} {r:.2f}×{w:g}" for name, w, r in terms)
    if risk >= combine.threshold:
        return Verdict.ABSTAIN, risk, f"abstain: weighted risk {risk:.2f} >= " \
                                      f"{combine.threshold:.2f} ({parts})"
    return Verdict.ANSWER, risk, f"answer: weighted risk {risk:.2f} < " \
                                 f"{combine.threshold:.2f} ({parts})"


def _score_reason(score: DetectorScore, enabled: bool) -> str:
    """``halt: risk 0.83 >= 0.61``, ``edfl: error (TimeoutError: ...), counted as ...``."""
    label = score.name if enabled else f"{score.name} (not enabled, not counted)"
    if score.status != "ok":
        what = "missing logprobs" if score.status == "missing_logprobs" else "error"
        effect = ("counted as abstain (fail closed)" if score.counted
                  else "ignored (fail open)") if enabled else "ignored"
        return f"{label}: {what} ({score.detail.get('error')}), {effect}"
    threshold = _risk_threshold(score)
    if threshold is not None:
        sign = ">=" if score.verdict is Verdict.ABSTAIN else "<"
        return f"{label}: risk {score.risk:.2f} {sign} {threshold:.2f}"
    own = score.detail.get("reason") or "; ".join(score.detail.get("reasons") or ())
    own = f"; {own}" if own else ""
    return f"{label}: {score.verdict.value} (risk {score.risk:.2f}{own})"


def _risk_threshold(score: DetectorScore) -> float | None:
    """The risk threshold behind a detector's verdict, when a risk threshold decided it
    (the judgement reports it: detectors.protocol.Judgement.to_dict)."""
    value = score.detail.get("threshold")
    if score.detail.get("threshold_score", "risk") != "risk":
        return None
    return float(value) if isinstance(value, int | float) else None


def _json_safe(value: Any) -> Any:
    """Plain JSON types only: enums by value, tuples as lists, NaN/inf as None."""
    if isinstance(value, Enum):
        return _json_safe(value.value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _json_safe(value.tolist())
    if hasattr(value, "__float__"):  # Decimal, fractions, ...
        return _json_safe(float(value))
    return str(value)
