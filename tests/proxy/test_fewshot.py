"""The few-shot QA rendering a base model (Gemma 3 270M) is served with."""

from __future__ import annotations

import pytest

from proxy.fewshot import (
    DEFAULT_PREAMBLE,
    FEWSHOT_EXAMPLES,
    FEWSHOT_STOP,
    render_fewshot_qa,
)

EXAMPLES = "\n".join(f"Q: {q}\nA: {a}" for q, a in FEWSHOT_EXAMPLES)


def test_a_single_question_ends_in_an_open_answer_line() -> None:
    prompt = render_fewshot_qa([{"role": "user", "content": "What is the capital of France?"}])
    assert prompt == (f"{DEFAULT_PREAMBLE}\n\n{EXAMPLES}\n"
                      "Q: What is the capital of France?\nA:")


def test_system_and_developer_messages_replace_the_default_preamble() -> None:
    prompt = render_fewshot_qa([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who wrote Hamlet?"},
        {"role": "developer", "content": "Use full names."},
    ])
    assert prompt.startswith(f"Be brief.\n\nUse full names.\n\n{EXAMPLES}\n")
    assert DEFAULT_PREAMBLE not in prompt
    assert prompt.endswith("Q: Who wrote Hamlet?\nA:")


def test_earlier_turns_become_solved_pairs_after_the_examples() -> None:
    prompt = render_fewshot_qa([
        {"role": "user", "content": "Who wrote Hamlet?"},
        {"role": "assistant", "content": "William Shakespeare"},
        {"role": "user", "content": "In which country was he born?"},
    ])
    assert prompt.endswith(f"{EXAMPLES}\nQ: Who wrote Hamlet?\nA: William Shakespeare\n"
                           "Q: In which country was he born?\nA:")


def test_consecutive_user_and_tool_turns_make_one_question() -> None:
    prompt = render_fewshot_qa([
        {"role": "user", "content": [{"type": "text", "text": "Evidence: Paris is in France."},
                                     {"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Question: Where is Paris?"},
    ])
    assert prompt.endswith("Q: Evidence: Paris is in France.\nQuestion: Where is Paris?\nA:")


def test_a_final_assistant_message_is_continued() -> None:
    prompt = render_fewshot_qa([{"role": "user", "content": "Name a colour."},
                                {"role": "assistant", "content": "The colour is"}])
    assert prompt.endswith("Q: Name a colour.\nA: The colour is")


def test_the_answer_stops_at_the_end_of_its_line() -> None:
    assert FEWSHOT_STOP == ["\n"]
    # every example answer is one line, so the pattern the model continues is one-line too
    assert all("\n" not in answer for _, answer in FEWSHOT_EXAMPLES)


def test_the_chat_format_can_be_registered_twice() -> None:
    pytest.importorskip("llama_cpp")
    from llama_cpp.llama_chat_format import LlamaChatCompletionHandlerRegistry

    from proxy.fewshot import FEWSHOT_CHAT_FORMAT
    from proxy.llama_child import register_chat_formats

    register_chat_formats()
    register_chat_formats()  # idempotent: every gateway in a process registers it
    assert FEWSHOT_CHAT_FORMAT in LlamaChatCompletionHandlerRegistry()._chat_handlers
