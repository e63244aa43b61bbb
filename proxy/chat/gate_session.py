"""The protocol between the chat service and the gates (implemented by
proxy/gatekeeper.py).

For every request the service asks the :class:`Gatekeeper` for a :class:`GateSession`
*before* calling the upstream (so prompt-time detectors such as EDFL can start at once,
concurrently with the answer), then hands the session the finished answers — from a JSON
response or accumulated from a stream — and applies the :class:`GateOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from detectors.protocol import Judgement
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
    tokens: list[dict] | None  # logprobs.content as the upstream sent it (detectors read
    # these dicts directly); None: the upstream sent no logprobs
    finish_reason: str | None = None
    tool_calls: list[dict] | None = None  # the choice's tool calls (complete), if any


@dataclass
class GateOutcome:
    abstain: bool = False  # replace every choice's content with ``replacement``
    replacement: str | None = None  # abstention text, or the semantic gate's chosen answer
    refusal_only: bool = False  # an abstention goes in ``refusal`` alone, ``content`` null
    # (a structured-output request: its content must parse, and the SDK reads the refusal)
    metadata: dict | None = None  # the ``hallgate`` object for body / final chunk
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProgressivePlan:
    """How a progressive stream releases and cuts (from the profile's `progressive` knobs)."""

    holdback_tokens: int  # W: the client stays this many tokens behind the upstream
    rescore_every: int  # k: the prefix is judged every k tokens
    threshold: float  # prefix risk >= this crosses
    cut: bool  # the stream may be cut (action abstain); annotate/shadow only report
    detector: str = ""  # the detector that judges the prefixes
    answer_kind: str = ""  # the kind of answer the request asks for (policies/answer_kind)
    kind_uncut: bool = False  # that kind is outside the profile's `progressive.cut_on`:
    # checked and reported, never cut; the whole answer's judgement decides
    holds_tail: bool = True  # the last W tokens wait for the whole answer's judgement
    # (it may withhold them: action abstain); False: they go out when the upstream ends
    # and the judgement follows in the verdict chunk (annotate, shadow)


class GateSession(Protocol):
    response_id: str  # the id the client gets (chatcmpl-...), minted by the gateway
    streaming_mode: Literal["buffer", "passthrough", "progressive"]
    headers: dict[str, str]  # known before the answer: route, profile
    reads_logprobs: bool  # a detector reads the answer's logprobs: ask the upstream for them

    async def judge(self, answers: list[Answer]) -> GateOutcome: ...

    def progressive_plan(self) -> ProgressivePlan | None:
        """None when this request cannot stream progressively (the service buffers)."""

    async def prompt_verdict(self) -> GateOutcome | None:
        """Waits for the prompt-only gates; an abstaining outcome when they decide alone."""

    async def feed_prefix(self, tokens: list[dict]) -> Judgement | None:
        """The prefix judge's judgement (``.risk``) of the answer prefix so far, given the
        tokens that arrived since the previous call; None when it cannot judge it."""

    async def judge_cut(self, answer: Answer, judgement: Judgement) -> GateOutcome:
        """The decision of a stream cut by its prefix judgement."""

    async def aclose(self) -> None: ...


class Gatekeeper(Protocol):
    def begin(self, request: ChatCompletionRequest, ctx: RequestContext,
              model: str) -> GateSession: ...
