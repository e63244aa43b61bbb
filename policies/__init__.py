"""Per-route policies: which profile judges a request, and how detector results decide.

    policy = load_policy("policy.yaml")                      # or PolicyStore(path).policy
    chosen = resolve_route(policy, path=..., route_header=..., model=..., key_name=...)
    route, profile = chosen.route, chosen.profile            # RoutingError -> HTTP 400/403
    profile = apply_overrides(profile, request_headers)      # OverrideError -> HTTP 400
    profile, escalation = apply_hard_rule(policy, profile, prompt_text(messages))
    ... run profile.detectors.enabled() ...
    decision = decide(profile, results, route=route.name, escalation=escalation,
                      combiner=policy.combiner(profile))
    decision.returned, decision.to_dict()                    # the `hallgate` object

Nothing here speaks HTTP; see docs/POLICIES.md for the file format.
"""

from detectors.sampling import prompt_text
from policies.decision import Decision, DetectorScore, Escalation, decide
from policies.hard_rule import FactualSignal, apply_hard_rule, factual_signal
from policies.loader import builtin_profile_names, load_policy, load_policy_text
from policies.overrides import OverrideError, apply_overrides, knob_header
from policies.routing import (
    Resolution,
    RouteNotAllowed,
    RoutingError,
    UnknownRoute,
    resolve_route,
)
from policies.schema import ROUTE_HEADER, Policy, Profile, Route
from policies.store import PolicyStore, ReloadResult
from policies.yaml_source import PolicyError, PolicyIssue

__all__ = [
    "ROUTE_HEADER", "Decision", "DetectorScore", "Escalation",
    "FactualSignal", "OverrideError", "Policy", "PolicyError",
    "PolicyIssue", "PolicyStore", "Profile", "ReloadResult", "Resolution", "Route",
    "RouteNotAllowed", "RoutingError", "UnknownRoute", "apply_hard_rule",
    "apply_overrides", "builtin_profile_names", "decide", "factual_signal", "knob_header",
    "load_policy", "load_policy_text", "prompt_text", "resolve_route",
]
