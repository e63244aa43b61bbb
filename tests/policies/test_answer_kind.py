"""`tool_calls`: what each built-in profile does with an answer that calls tools."""

import pytest

from detectors.verdict import Verdict
from policies import PolicyError, decide, load_policy, load_policy_text
from policies.answer_kind import (
    forces_tool_call,
    judges_forced_call,
    note_judged_tool_calls,
    tool_call_decision,
)
from policies.loader import EXAMPLES_DIR
from policies.schema import Profile

CALLS = [{"id": "call_0", "type": "function",
          "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]


def test_every_route_of_the_default_policy_passes_tool_calls_and_shadow_judges_them():
    policy = load_policy(EXAMPLES_DIR / "default.yaml")
    modes = {name: p.tool_calls for name, p in policy.profiles.items()}
    assert modes == {"strict-factual": "pass", "fast-factual": "pass",
                     "code-creative-local": "pass",
                     "annotate-halt": "pass", "shadow": "judge"}
    for name, mode in [("code-creative", "pass"), ("black-box", "pass")]:
        builtin = load_policy_text(f"routes:\n  - {{name: d, default: true, profile: {name}}}\n")
        assert builtin.profiles[name].tool_calls == mode


def test_pass_answers_unjudged_and_says_so():
    decision = tool_call_decision(Profile(name="p"), CALLS, route="strict")
    assert decision.verdict is Verdict.ANSWER and not decision.abstained
    assert decision.detectors == {} and decision.route == "strict"
    assert decision.reasons[0].startswith("tool calls (get_weather): passed unjudged")


@pytest.mark.parametrize("action, returned", [("abstain", Verdict.ABSTAIN),
                                              ("annotate", Verdict.ANSWER)])
def test_abstain_refuses_a_tool_call_under_the_profile_action(action, returned):
    profile = Profile(name="p", tool_calls="abstain", action=action)
    decision = tool_call_decision(profile, CALLS)
    assert decision.verdict is Verdict.ABSTAIN and decision.returned is returned


@pytest.mark.parametrize("mode", ["pass", "judge", "abstain"])
def test_an_answer_without_calls_is_always_left_to_the_detectors(mode):
    assert tool_call_decision(Profile(name="p", tool_calls=mode), None) is None
    assert tool_call_decision(Profile(name="p", tool_calls=mode), []) is None


def test_judge_leaves_the_decision_to_the_detectors_and_notes_what_was_judged():
    profile = Profile(name="p", tool_calls="judge")
    assert tool_call_decision(profile, CALLS) is None
    decision = decide(profile, {"halt": RuntimeError("x")})
    noted = note_judged_tool_calls(decision, CALLS, text="Checking.", has_logprobs=False)
    assert noted.reasons[0] == ("tool calls (get_weather): judged the text beside them "
                                "(tool_calls: judge)")
    assert noted.reasons[1:] == decision.reasons
    bare = note_judged_tool_calls(decision, CALLS, text="", has_logprobs=False)
    assert "judged nothing but the calls (the fail mode decides)" in bare.reasons[0]
    assert note_judged_tool_calls(decision, None, text="", has_logprobs=True) is decision


def test_an_unknown_tool_calls_mode_is_a_load_error_naming_the_key():
    with pytest.raises(PolicyError) as info:
        load_policy_text("routes:\n  - {name: d, default: true, profile: p}\nprofiles:\n"
                         "  p:\n    tool_calls: sometimes\n", "policy.yaml")
    assert "profiles.p.tool_calls" in str(info.value) and "policy.yaml:5" in str(info.value)


@pytest.mark.parametrize(("choice", "forced"), [
    (None, False), ("auto", False), ("none", False), ("required", True),
    ({"type": "function", "function": {"name": "get_weather"}}, True),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": []}}, True),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}, False),
])
def test_which_tool_choices_force_a_call(choice, forced):
    assert forces_tool_call(choice) is forced


@pytest.mark.parametrize(("mode", "judged"), [("pass", False), ("abstain", False),
                                              ("judge", True)])
def test_a_forced_call_is_judged_only_where_the_profile_judges_tool_calls(mode, judged):
    profile = Profile(name="p", tool_calls=mode)
    assert judges_forced_call(profile, "required") is judged
    assert judges_forced_call(profile, "auto") is True
