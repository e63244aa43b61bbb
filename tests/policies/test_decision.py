"""decide(): every combine mode × fail mode × action, on small fake results."""

import json
import math
from dataclasses import dataclass

import pytest

from detectors.protocol import MissingLogprobs
from detectors.verdict import Verdict
from policies import Escalation, Profile, decide

A, X = Verdict.ANSWER, Verdict.ABSTAIN


@dataclass(frozen=True)
class Fake:
    verdict: Verdict
    risk: float
    reason: str = ""
    threshold: float | None = None  # a risk threshold reported with the result

    def to_dict(self) -> dict:
        own = {} if self.threshold is None else {"threshold": self.threshold}
        return {"verdict": self.verdict.value, "risk": self.risk, "reason": self.reason,
                "isr": math.inf, "S": (0.1, 0.2), **own}


def profile(combine="any", fail_mode="closed", action="abstain", **kw) -> Profile:
    data = {
        "name": "p",
        "detectors": {"halt": {"enabled": True, "threshold": 0.6},
                      "edfl": {"enabled": True}, "semantic": {"enabled": False}},
        "combine": {"mode": combine, "threshold": 0.5, "weights": {"halt": 2.0}},
        "fail_mode": fail_mode, "action": action, **kw,
    }
    return Profile.model_validate(data)


FAILURES = {"error": TimeoutError("upstream timed out"), "missing": MissingLogprobs()}

# (combine, fail mode, halt, edfl) -> expected judgement.
# weighted: r = (2·risk_halt + 1·risk_edfl) / 3, abstain iff r >= 0.5; a failed detector
# is left out (open) or counts as risk 1 (closed).
CASES = [
    ("any", "open", Fake(A, 0.2), Fake(A, 0.3), A),
    ("any", "open", Fake(A, 0.2), Fake(X, 0.9), X),
    ("any", "open", Fake(A, 0.2), "error", A),
    ("any", "open", "missing", Fake(A, 0.1), A),
    ("any", "open", "missing", "error", A),
    ("any", "closed", Fake(A, 0.2), Fake(A, 0.3), A),
    ("any", "closed", Fake(X, 0.7), Fake(A, 0.3), X),
    ("any", "closed", Fake(A, 0.2), "error", X),
    ("any", "closed", "missing", Fake(A, 0.1), X),
    ("weighted", "open", Fake(A, 0.2), Fake(X, 0.9), A),  # (0.4 + 0.9) / 3 = 0.43
    ("weighted", "open", Fake(A, 0.5), Fake(X, 0.9), X),  # (1.0 + 0.9) / 3 = 0.63
    ("weighted", "open", Fake(A, 0.3), "error", A),  # 0.3 alone
    ("weighted", "open", "missing", Fake(A, 0.4), A),  # 0.4 alone
    ("weighted", "open", "missing", "error", A),  # nothing counted
    ("weighted", "closed", Fake(A, 0.2), Fake(A, 0.3), A),  # 0.7 / 3 = 0.23
    ("weighted", "closed", Fake(A, 0.3), "error", X),  # (0.6 + 1) / 3 = 0.53
    ("weighted", "closed", "missing", Fake(A, 0.1), X),  # (2 + 0.1) / 3 = 0.7
]


def _result(spec):
    return FAILURES[spec] if isinstance(spec, str) else spec


@pytest.mark.parametrize("action", ["abstain", "annotate", "shadow"])
@pytest.mark.parametrize(("combine", "fail_mode", "halt", "edfl", "expected"), CASES)
def test_combine_fail_mode_action(combine, fail_mode, halt, edfl, expected, action):
    p = profile(combine, fail_mode, action)
    decision = decide(p, {"halt": _result(halt), "edfl": _result(edfl)}, route="r")
    assert decision.verdict is expected
    returned = expected if action == "abstain" else A
    assert decision.returned is returned
    assert decision.abstained == (returned is X)
    assert (decision.action, decision.profile, decision.route) == (action, "p", "r")
    json.dumps(decision.to_dict(), allow_nan=False)  # JSON-safe in every case


def test_weighted_score_is_the_weighted_mean():
    decision = decide(profile("weighted"), {"halt": Fake(A, 0.5), "edfl": Fake(X, 0.9)})
    assert decision.risk == pytest.approx((2 * 0.5 + 0.9) / 3)
    assert decision.reasons[-1] == (
        "abstain: weighted risk 0.63 >= 0.50 (halt 0.50×2, edfl 0.90×1)")


def test_reasons_name_threshold_and_failure_handling():
    decision = decide(profile("any", "closed"),
                      {"halt": Fake(X, 0.83, threshold=0.6), "edfl": TimeoutError("slow")})
    assert decision.reasons[0] == "halt: risk 0.83 >= 0.60"
    assert decision.reasons[1] == ("edfl: error (TimeoutError: slow), "
                                   "counted as abstain (fail closed)")
    assert decision.reasons[2] == "abstain: halt, edfl abstained (any)"
    open_ = decide(profile("any", "open"), {"halt": Fake(A, 0.1), "edfl": MissingLogprobs()})
    assert open_.reasons[1] == ("edfl: missing logprobs (the upstream returned no token "
                                "logprobs), ignored (fail open)")


def test_detector_own_reason_is_quoted_without_threshold():
    decision = decide(profile(), {"halt": Fake(A, 0.1), "edfl": Fake(X, 0.7, "ISR 0.4 < 1")})
    assert decision.reasons[1] == "edfl: abstain (risk 0.70; ISR 0.4 < 1)"


def test_enabled_detector_without_result_is_an_error():
    decision = decide(profile("any", "closed"), {"halt": Fake(A, 0.1)})
    assert decision.verdict is X
    assert decision.detectors["edfl"].status == "error"


def test_results_of_disabled_detectors_are_reported_not_counted():
    results = {"halt": Fake(A, 0.1), "edfl": Fake(A, 0.1), "semantic": Fake(X, 1.0)}
    decision = decide(profile(), results)
    assert decision.verdict is A
    assert decision.scores["semantic"]["counted"] is False
    assert decision.reasons[2].startswith("semantic (not enabled, not counted): abstain")


def test_malformed_risk_is_an_error_not_a_number():
    decision = decide(profile("any", "closed"), {"halt": Fake(A, math.nan), "edfl": Fake(A, 0)})
    assert decision.detectors["halt"].status == "error"
    assert decision.verdict is X


def test_no_detectors_enabled_answers():
    p = profile(detectors={"halt": {"enabled": False}})
    decision = decide(p, {})
    assert decision.verdict is A and decision.risk is None


def test_to_dict_is_the_hallgate_object():
    escalation = Escalation("code-creative", "prompt names 'Carlos Santana' together with '1985'")
    decision = decide(profile(action="annotate"),
                      {"halt": Fake(X, 0.9, threshold=0.6), "edfl": Fake(A, 0.2)},
                      route="code", escalation=escalation)
    body = decision.to_dict()
    json.dumps(body, allow_nan=False)
    assert body["decision"] == "abstain" and body["returned"] == "answer"
    assert body["route"] == "code" and body["profile"] == "p"
    assert body["escalated_by_hard_rule"] is True
    assert body["escalated_from"] == "code-creative"
    assert body["detectors"]["halt"]["risk"] == 0.9
    assert body["detectors"]["edfl"]["isr"] is None  # infinity is not JSON
    assert body["detectors"]["edfl"]["S"] == [0.1, 0.2]
    assert body["reasons"][0] == "halt: risk 0.90 >= 0.60"


def test_response_headers_and_visibility():
    results = {"halt": Fake(X, 0.9), "edfl": Fake(A, 0.2)}
    decision = decide(profile(action="annotate"), results, route="s")
    assert decision.response_headers() == {  # decision = the judgement; returned apart
        "x-hallgate-decision": "abstain", "x-hallgate-returned": "answer",
        "x-hallgate-route": "s", "x-hallgate-profile": "p", "x-hallgate-escalated": "false",
        "x-hallgate-risk": "0.9000"}
    shadow = decide(profile(action="shadow"), results, route="s")
    assert shadow.response_headers() == {  # shadow only logs the judgement
        "x-hallgate-returned": "answer", "x-hallgate-route": "s", "x-hallgate-profile": "p",
        "x-hallgate-escalated": "false"}
    assert shadow.shown_to_client is False and not shadow.abstained


def test_to_dict_without_detail_keeps_scores_and_reasons_only():
    decision = decide(profile(), {"halt": Fake(A, 0.1), "edfl": Fake(X, 0.8, "ISR 0.2 < 1")})
    assert decision.to_dict(detail=False)["detectors"]["edfl"] == {
        "reason": "ISR 0.2 < 1", "status": "ok", "counted": True, "verdict": "abstain",
        "risk": 0.8}
