"""`streaming: progressive` in policy files: its knobs, and the profiles it cannot serve
(no HALT, the semantic gate, a hard-rule target with the semantic gate), each refused
with file, line and reason."""

import textwrap

import pytest

from policies import PolicyError, apply_hard_rule, apply_overrides, load_policy_text
from policies.overrides import OverrideError


def load(text: str):
    return load_policy_text(textwrap.dedent(text), "policy.yaml")


def issues(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load(text)
    return [str(i) for i in info.value.issues]


def test_progressive_knobs_load_with_their_defaults_and_values():
    policy = load("""
        routes:
          - {name: live, match: {header: live}, profile: live}
          - {name: d, default: true, profile: tuned}
        profiles:
          live:
            extends: strict-factual
            streaming: progressive
          tuned:
            extends: live
            progressive: {holdback_tokens: 4, rescore_every: 2, threshold: 0.6}
    """)
    live, tuned = policy.profiles["live"], policy.profiles["tuned"]
    assert live.streaming == "progressive" and tuned.streaming == "progressive"
    assert (live.progressive.holdback_tokens, live.progressive.rescore_every) == (8, 8)
    assert live.progressive.threshold is None  # the checkpoint's prefix threshold
    assert (tuned.progressive.holdback_tokens, tuned.progressive.rescore_every,
            tuned.progressive.threshold) == (4, 2, 0.6)


def test_progressive_with_the_semantic_gate_is_refused_at_the_streaming_line():
    problems = issues("""
        routes:
          - {name: d, default: true, profile: live-code}
        profiles:
          live-code:
            extends: strict-factual
            detectors: {semantic: {enabled: true}}
            streaming: progressive
    """)
    assert len(problems) == 1
    assert problems[0].startswith("policy.yaml:8: profiles.live-code.streaming:")
    assert "cannot be combined with 'semantic'" in problems[0]


def test_progressive_without_halt_is_refused():
    problems = issues("""
        routes:
          - {name: d, default: true, profile: blind}
        profiles:
          blind:
            detectors: {halt: {enabled: false}}
            streaming: progressive
    """)
    assert len(problems) == 1 and "policy.yaml:7: profiles.blind.streaming:" in problems[0]
    assert "judges prefixes; enable a detector that does (halt, " in problems[0]


def test_progressive_route_escalating_to_a_semantic_profile_is_refused():
    problems = issues("""
        routes:
          - {name: d, default: true, profile: live}
        profiles:
          live:
            extends: strict-factual
            streaming: progressive
            escalate_factual_to: semantic-strict
          semantic-strict:
            extends: strict-factual
            detectors: {semantic: {enabled: true}}
    """)
    assert len(problems) == 1
    assert problems[0].startswith("policy.yaml:8: profiles.live.escalate_factual_to:")
    assert "cannot be combined with 'semantic'" in problems[0]


def test_bad_knob_values_are_refused():
    problems = issues("""
        routes:
          - {name: d, default: true, profile: live}
        profiles:
          live:
            extends: strict-factual
            streaming: progressive
            progressive: {rescore_every: 0, threshold: 1.5}
    """)
    assert len(problems) == 2
    assert any("progressive.rescore_every" in p for p in problems)
    assert any("progressive.threshold" in p for p in problems)


def test_the_named_prefix_judge_must_be_enabled_and_judge_prefixes():
    problems = issues("""
        routes:
          - {name: d, default: true, profile: live}
        profiles:
          live:
            detectors: {halt: {enabled: true}}
            streaming: progressive
            progressive: {detector: mean_logprob}
    """)
    assert len(problems) == 1
    assert "progressive.detector 'mean_logprob' must be an enabled detector" in problems[0]
    assert problems[0].startswith("policy.yaml:")


def test_header_override_to_progressive_is_refused_on_a_semantic_profile():
    policy = load("""
        routes:
          - {name: d, default: true, profile: code}
        profiles:
          code:
            extends: code-creative
            allow_overrides: [streaming, progressive.holdback_tokens]
    """)
    profile = policy.profiles["code"]
    with pytest.raises(OverrideError) as info:
        apply_overrides(profile, {"x-hallgate-streaming": "progressive"})
    assert info.value.header == "x-hallgate-streaming"
    tuned = apply_overrides(profile, {"x-hallgate-progressive-holdback-tokens": "3"})
    assert tuned.progressive.holdback_tokens == 3


def test_hard_rule_keeps_the_routes_progressive_knobs():
    policy = load("""
        routes:
          - {name: d, default: true, profile: live}
        profiles:
          live:
            extends: strict-factual
            escalate_factual_to: strict-factual
            streaming: progressive
            progressive: {holdback_tokens: 3}
    """)
    judged, escalation = apply_hard_rule(policy, policy.profiles["live"],
                                         "When did Barack Obama take office in 2009?")
    assert escalation is not None and judged.name == "strict-factual"
    assert judged.streaming == "progressive" and judged.progressive.holdback_tokens == 3
