"""How much of a prompt the detectors read: a bounded view of a huge conversation.

The body limit lets a client send a 1 MB prompt or tens of thousands of messages. The
answer call forwards them untouched, but the detectors' own work (skeleton masking, the
hard rule's regexes, decision calls with 1 + m copies of the prompt) grows with the
prompt, so they judge a bounded view of it instead:

- the last ``max_messages`` messages (a leading system message is kept in front);
- at most ``max_chars`` characters of message text in all, newest messages first (the
  system message comes last, and older messages past the budget are dropped); a message
  cut by the budget keeps its head and its tail around an ellipsis marker, since the
  question usually sits at one end of a long document.

A prompt inside the bounds is returned unchanged (the same list object), so small prompts
cost nothing here.

    view = bound_messages(messages)      # BoundedView(messages=[...], clipped=False)
    text = bound_text(long_text, 32_000)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Message = dict  # an OpenAI chat message: {"role": ..., "content": ...}

ELLIPSIS = "\n[…]\n"


@dataclass(frozen=True)
class PromptBounds:
    max_messages: int = 64  # newest messages a detector reads (plus a leading system one)
    max_chars: int = 32_000  # characters of message text in all (about 8k tokens); skeleton
    # building costs about 3 ms per 1,000 characters on one core, so about 0.1 s at most


@dataclass(frozen=True)
class BoundedView:
    messages: list[Message]  # what the detectors judge
    clipped: bool  # True when messages were dropped or texts were cut


def bound_text(text: str, max_chars: int) -> str:
    """``text`` if short enough, else its head and tail (``max_chars`` in all) around
    an ellipsis marker."""
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - len(ELLIPSIS))
    head = keep - keep // 2
    return text[:head] + ELLIPSIS + (text[-(keep // 2):] if keep // 2 else "")


def _text_length(message: Message) -> int:
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    return 0


def _clip_message(message: Message, max_chars: int) -> Message:
    """A copy of ``message`` whose text parts together keep at most ``max_chars``."""
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": bound_text(content, max_chars)}
    parts, left = [], max_chars
    for part in content or ():
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            part = {**part, "text": bound_text(part["text"], left)}
            left = max(0, left - len(part["text"]))
        parts.append(part)
    return {**message, "content": parts}


def bound_messages(messages: Sequence[Message],
                   bounds: PromptBounds = PromptBounds()) -> BoundedView:
    """The view of ``messages`` the detectors read (see the module docstring)."""
    total = sum(_text_length(m) for m in messages[-bounds.max_messages:])
    if len(messages) <= bounds.max_messages and total <= bounds.max_chars:
        return BoundedView(messages if isinstance(messages, list) else list(messages), False)
    head: list[Message] = []
    tail = list(messages[-bounds.max_messages:])
    if messages and messages[0].get("role") == "system" and len(messages) > len(tail):
        head, tail = [messages[0]], tail[1:]
    kept: list[Message] = []
    budget = bounds.max_chars
    for message in reversed(head + tail):
        if budget <= 0:
            break
        length = _text_length(message)
        kept.append(message if length <= budget else _clip_message(message, budget))
        budget -= min(length, budget)
    kept.reverse()
    return BoundedView(kept, True)
