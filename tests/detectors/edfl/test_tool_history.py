"""Multi-turn tool use in the EDFL prompts: tool results are evidence, not the question."""

import pytest

from detectors.edfl.decision import render_conversation
from detectors.edfl.skeletons import SkeletonConfig, build_skeletons, resolve_mode
from detectors.semantic.gate import last_user_text

RESULT = '{"city": "Paris", "temp_c": 21, "sky": "clear"}'
EXCHANGE = [
    {"role": "system", "content": "You are a weather assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_0", "content": RESULT},
]


@pytest.mark.parametrize("masking", ["auto", "closed_book", "evidence"])
def test_every_skeleton_erases_the_tool_result_and_keeps_the_call(masking):
    config = SkeletonConfig(m=6, mode=masking)
    for skeleton in build_skeletons(EXCHANGE, config):
        tool = skeleton.messages[3]
        assert tool == {"role": "tool", "tool_call_id": "call_0", "content": "[MASK]"}
        assert skeleton.messages[2] == EXCHANGE[2]  # the call itself is not evidence
        assert skeleton.messages[0] == EXCHANGE[0]


def test_a_tool_result_selects_evidence_erase_in_auto_mode():
    assert resolve_mode(EXCHANGE, SkeletonConfig()) == "evidence"
    assert resolve_mode(EXCHANGE[:2], SkeletonConfig()) == "closed_book"
    skeleton = build_skeletons(EXCHANGE, SkeletonConfig(m=1))[0]
    assert skeleton.messages[1] == EXCHANGE[1]  # the question stays; the evidence goes


def test_the_decision_prompt_shows_calls_and_heads_tool_results_as_such():
    text = render_conversation(EXCHANGE)
    assert '[assistant]\n(called get_weather({"city": "Paris"}))' in text
    assert f"[tool result]\n{RESULT}" in text
    assert "[user]\nWhat is the weather in Paris?" in text


def test_the_semantic_question_is_the_users_not_the_tools():
    assert last_user_text(EXCHANGE) == "What is the weather in Paris?"

