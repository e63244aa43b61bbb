"""The seam between the gates and the upstream: plain data in, plain data out.

``proxy/`` implements :class:`Sampler` over a real upstream (httpx or litellm, with
retries and the ``n`` fan-out for upstreams that ignore ``n``); tests implement it in
memory. Detectors only ever see these types, never HTTP.

    sampler = ...                      # any object with this async __call__
    samples = await sampler(messages, n=5, temperature=1.0, max_tokens=48)
    samples[0].text, samples[0].tokens[0].top   # [(token, logprob), ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

Message = dict  # an OpenAI chat message: {"role": ..., "content": ...}


def prompt_text(messages: list[Message]) -> str:
    """The text of the user turns of OpenAI chat ``messages`` (content parts included)."""
    parts: list[str] = []
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content
                      if isinstance(p, dict) and p.get("type") == "text"]
    return "\n\n".join(parts)


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token as OpenAI's ``logprobs.content[i]`` describes it."""

    token: str
    logprob: float  # log-probability of the chosen token, nats
    top: tuple[tuple[str, float], ...] = ()  # alternatives as (token, logprob), as given


@dataclass(frozen=True)
class Sample:
    """One completion choice of the upstream."""

    text: str
    tokens: tuple[TokenLogprob, ...] | None = None  # None when the upstream gave no logprobs
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class SamplerStats:
    """What a gate spent; the proxy's sampler fills it in, gates report it."""

    calls: int = 0  # upstream HTTP calls actually made
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    extra: dict = field(default_factory=dict)


class Sampler(Protocol):
    """Ask the upstream for ``n`` completions of ``messages``.

    Implementations return exactly ``n`` samples (fanning out concurrent calls when the
    upstream ignores ``n``), request ``top_logprobs`` alternatives per token when
    ``top_logprobs > 0``, seed the draw with ``seed`` when given one (answer i with
    ``seed + i`` where they fan out), and raise on upstream failure after their own
    retries.
    ``model`` is the upstream model name; ``None`` means the route's model.
    """

    async def __call__(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        top_p: float | None = None,
        max_tokens: int | None = 64,
        top_logprobs: int = 20,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[Sample]: ...
