"""A chat conversation rendered as a few-shot question-answering prompt, for base models.

A base model (Gemma 3 270M) has no chat template: asked through one it answers nothing or
echoes the prompt, but it continues a "Q: ... / A: ..." pattern. So a conversation is
rendered as a short preamble, a few fixed solved examples, then its own turns:

    messages                                  prompt
    --------                                  ------
    system: Be brief.                         Be brief.
                                              <blank line>
                                              Q: What is the capital of Italy?
                                              A: Rome
                                              ... (FEWSHOT_EXAMPLES)
    user: Who wrote Hamlet?                   Q: Who wrote Hamlet?
    assistant: Shakespeare.                   A: Shakespeare.
    user: When?                               Q: When?
                                              A:

System and developer messages, wherever they are, make the preamble (``DEFAULT_PREAMBLE``
when there are none). Consecutive user and tool messages make one question; an assistant
message with no text (a tool call) adds nothing. A conversation that ends with an
assistant message ends with its text after "A:", so the model continues that answer.
The answer is one line: ``FEWSHOT_STOP`` ends it at the first newline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

FEWSHOT_CHAT_FORMAT = "hallgate-fewshot-qa"  # the name llama_cpp knows the renderer by
DEFAULT_PREAMBLE = "Answer each question briefly."
FEWSHOT_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the capital of Italy?", "Rome"),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci"),
    ("Tom has 3 apples and buys 4 more. How many apples does he have?", "7"),
)
FEWSHOT_STOP = ["\n"]  # the answer is the rest of the "A:" line


def message_text(content: Any) -> str:
    """The text of an OpenAI message ``content``: a string, or a list of parts whose
    ``text`` parts are joined (images and other parts carry no text)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content
                   if isinstance(part, Mapping) and part.get("type") == "text")


def _turns(messages: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[tuple[str, str]]]:
    """(preamble parts, [(role, text)]) with consecutive question turns merged."""
    preamble: list[str] = []
    turns: list[tuple[str, str]] = []
    for message in messages:
        role = message.get("role")
        text = message_text(message.get("content")).strip()
        if role in ("system", "developer"):
            if text:
                preamble.append(text)
        elif role == "assistant":
            if text:
                turns.append(("A", text))
        elif text:  # user, tool, function
            if turns and turns[-1][0] == "Q":
                turns[-1] = ("Q", f"{turns[-1][1]}\n{text}")
            else:
                turns.append(("Q", text))
    return preamble, turns


def render_fewshot_qa(messages: Iterable[Mapping[str, Any]]) -> str:
    """The few-shot prompt for ``messages`` (OpenAI chat messages), ending in "A:" or in
    the text of a final assistant message."""
    preamble, turns = _turns(messages)
    lines = ["\n\n".join(preamble) if preamble else DEFAULT_PREAMBLE, ""]
    for question, answer in FEWSHOT_EXAMPLES:
        lines += [f"Q: {question}", f"A: {answer}"]
    for role, text in turns:
        lines.append(f"{role}: {text}")
    if not turns or turns[-1][0] == "Q":
        lines.append("A:")
    return "\n".join(lines)
