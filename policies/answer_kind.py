"""What a profile does with an answer that calls tools (``Profile.tool_calls``).

A tool call is a request to run something, not a claim about the world: it has no text
and, from OpenAI, no logprobs. Judged like text it would fail closed on every strict
route (HALT: missing logprobs) and the semantic gate would graft a sampled answer beside
it. The claim an agent makes is the answer it writes once the tool's result is in the
conversation, and that answer is judged like any other (with the tool result read as
evidence). So:

    pass     the answer is returned unjudged; the decision says so
    judge    the detectors judge what the answer has: the text beside the calls and the
             logprobs the upstream gave (none from OpenAI: the fail mode decides)
    abstain  an answer that calls tools is refused (a route that must not call tools)

    decision = tool_call_decision(profile, answer_calls, route="strict")
    if decision is None:        # no tool calls, or `judge`: run the detectors
        decision = decide(...)
        decision = note_judged_tool_calls(decision, answer_calls, text=..., tokens=...)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from detectors.verdict import Verdict
from policies.decision import Decision, Escalation
from policies.schema import Profile


def call_names(calls: Sequence[dict]) -> str:
    """``get_weather, get_time``: the functions an answer calls, for reasons."""
    names = [((c.get("function") or {}).get("name") or c.get("name") or "?") for c in calls]
    return ", ".join(names)


def forces_tool_call(tool_choice: str | dict | None) -> bool:
    """Whether the request's ``tool_choice`` obliges the answer to call a tool
    (``"required"``, or one named function)."""
    if not isinstance(tool_choice, dict):
        return tool_choice == "required"
    kind = tool_choice.get("type")
    if kind == "allowed_tools":
        return (tool_choice.get("allowed_tools") or {}).get("mode") == "required"
    return kind in ("function", "custom")


def judges_forced_call(profile: Profile, tool_choice: str | dict | None) -> bool:
    """False when the answer must call a tool and the profile does not judge tool calls:
    its prompt-time detectors (EDFL, the semantic samples) would pay upstream calls for
    a verdict :func:`tool_call_decision` never reads."""
    return profile.tool_calls == "judge" or not forces_tool_call(tool_choice)


def tool_call_decision(profile: Profile, calls: Sequence[dict] | None, *,
                       route: str | None = None,
                       escalation: Escalation | None = None) -> Decision | None:
    """The decision on an answer with tool calls under ``pass`` or ``abstain``; None when
    the answer makes no calls or the profile judges them (the detectors decide)."""
    if not calls or profile.tool_calls == "judge":
        return None
    names = call_names(calls)
    if profile.tool_calls == "pass":
        verdict = Verdict.ANSWER
        reason = (f"tool calls ({names}): passed unjudged (tool_calls: pass); the answer "
                  "written from their results is judged")
    else:
        verdict = Verdict.ABSTAIN
        reason = f"tool calls ({names}): refused (tool_calls: abstain)"
    returned = verdict if profile.action == "abstain" else Verdict.ANSWER
    return Decision(verdict=verdict, returned=returned, action=profile.action, risk=None,
                    reasons=(reason,), detectors={}, profile=profile.name, route=route,
                    combine=profile.combine.mode, fail_mode=profile.fail_mode,
                    escalation=escalation)


def note_judged_tool_calls(decision: Decision, calls: Sequence[dict] | None, *, text: str,
                           has_logprobs: bool) -> Decision:
    """``decision`` with a reason saying what of a tool-calling answer was judged."""
    if not calls:
        return decision
    judged = [what for what, present in (("the text beside them", bool(text.strip())),
                                         ("the answer's token logprobs", has_logprobs))
              if present]
    what = " and ".join(judged) if judged else "nothing but the calls (the fail mode decides)"
    note = f"tool calls ({call_names(calls)}): judged {what} (tool_calls: judge)"
    return dataclasses.replace(decision, reasons=(note, *decision.reasons))
