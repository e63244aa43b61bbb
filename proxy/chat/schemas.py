"""The OpenAI chat-completions request, validated at the edge.

One msgspec ``Struct`` per OpenAI object. Unknown fields are allowed and still reach the
upstream (the body sent upstream is the client's own dict, not a re-serialised struct);
types are strict, so ``"n": "3"`` is a 400 naming ``n`` rather than a silent coercion.
msgspec rather than pydantic because every request pays for this validation, at
concurrency 1 on a cold cache, and msgspec's touches less (docs/BENCHMARKS.md, "Sixth
pass", measures the change with bench/ab_c1.py).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from proxy.errors import InvalidRequest, invalid_field

UPSTREAM_TOP_LOGPROBS = 20  # what we ask the upstream for when a detector reads logprobs

Penalty = Annotated[float, msgspec.Meta(ge=-2.0, le=2.0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


class ChatMessage(msgspec.Struct, forbid_unknown_fields=False):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(msgspec.Struct, forbid_unknown_fields=False):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, forbid_unknown_fields=False, dict=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    n: Positive = 1  # the upper bound is a setting, checked by the service
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    max_tokens: Positive | None = None
    max_completion_tokens: Positive | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None

    @classmethod
    def parse(cls, data: dict) -> ChatCompletionRequest:
        """Validate a decoded request (a bad field is an :class:`InvalidRequest` naming
        it); the dict itself is kept, so the upstream body and the gates' messages are
        taken from it rather than dumped from the struct again."""
        try:
            request = msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise invalid_request(str(exc)) from None
        request._raw = data
        return request

    def raw_messages(self) -> list[dict]:
        """The messages as the client sent them (validated, not re-serialised)."""
        return self._raw["messages"]

    def client_top_logprobs(self) -> int | None:
        """How many alternatives the client wants back per token; None = no logprobs."""
        if not self.logprobs:
            return None
        return self.top_logprobs or 0

    def upstream_body(self, max_tokens_field: str = "max_completion_tokens",
                      detector_logprobs: bool = True, null_content: str = "null") -> dict:
        """What we send upstream: the client's fields, with top-20 logprobs on when a
        detector reads them (``detector_logprobs``); otherwise the client's own logprob
        fields go as they are, so a route with every detector off asks for nothing more.
        ``null_content="empty"``: a message's null content goes as "" (the upstream's
        schema wants a string)."""
        body = {k: v for k, v in self._raw.items() if v is not None}
        if null_content == "empty":
            body["messages"] = empty_null_content(body["messages"])
        if detector_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = UPSTREAM_TOP_LOGPROBS
        body.pop("stream", None)
        limit = body.pop("max_completion_tokens", None) or body.pop("max_tokens", None)
        body.pop("max_tokens", None)
        if limit is not None:
            body[max_tokens_field] = limit
        return body


def empty_null_content(messages: list[dict]) -> list[dict]:
    """``messages`` with each null ``content`` as "" (the others are the same objects)."""
    if all(m.get("content") is not None for m in messages):
        return messages
    return [{**m, "content": ""} if m.get("content") is None else m for m in messages]


_WHERE = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def invalid_request(message: str) -> InvalidRequest:
    """A msgspec validation message (``Expected `int`, got `str` - at `$.n```) as one 400
    naming the field: ``param`` is its path (``messages[0].role``)."""
    found = _WHERE.match(message)
    what, path = found["what"], (found["path"] or "").lstrip(".")
    missing = _MISSING.match(what)
    if missing:
        path = f"{path}.{missing['field']}" if path else missing["field"]
        return InvalidRequest(f"Missing required field '{path}'.", param=path)
    return invalid_field(path or None, what)
