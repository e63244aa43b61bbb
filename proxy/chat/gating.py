"""The seam between the chat service and the gates.

For every request the service asks the :class:`Gatekeeper` for a :class:`GateSession`
*before* calling the upstream (so prompt-only gates such as EDFL can start at once,
concurrently with the answer), then hands the session the finished answers — from a JSON
response or accumulated from a stream — and applies the :class:`GateOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from proxy.chat.schemas import ChatCompletionRequest


@dataclass
class RequestContext:
    """What route matching and the audit log need to know about the HTTP request."""

    path: str
    request_id: str
    route_header: str | None = None
    key_name: str | None = None
    override_headers: dict[str, str] = field(default_factory=dict)  # x-hallgate-* knobs


@dataclass
class Answer:
    """One finished choice, as the gates see it."""

    index: int
    text: str
    tokens: list[dict] | None  # logprobs.content as the upstream sent it (HALT reads these
    # dicts directly); None: the upstream sent no logprobs
    finish_reason: str | None = None


@dataclass
class GateOutcome:
    abstain: bool = False  # replace every choice's content with ``replacement``
    replacement: str | None = None  # abstention text, or the semantic gate's chosen answer
    metadata: dict | None = None  # the ``hallgate`` object for body / final chunk
    headers: dict[str, str] = field(default_factory=dict)


class GateSession(Protocol):
    streaming_mode: Literal["buffer", "passthrough"]
    headers: dict[str, str]  # known before the answer: route, profile

    async def judge(self, answers: list[Answer]) -> GateOutcome: ...

    async def aclose(self) -> None: ...


class Gatekeeper(Protocol):
    def begin(self, request: ChatCompletionRequest, ctx: RequestContext,
              model: str) -> GateSession: ...
