"""An in-memory :class:`detectors.sampling.Sampler` for unit tests of the gates.

``ScriptedSampler(respond)`` calls ``respond(messages, kwargs, index)`` once per requested
sample and records every call, so tests can assert on what a gate asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from detectors.sampling import Sample, TokenLogprob


def sample_from_text(text: str, logprob: float = -0.1) -> Sample:
    """A sample whose every whitespace token has the given logprob and no alternatives."""
    words = text.split()
    tokens = tuple(TokenLogprob(w, logprob, ((w, logprob),)) for w in words)
    return Sample(text=text, tokens=tokens, finish_reason="stop", completion_tokens=len(words))


class ScriptedSampler:
    def __init__(self, respond: Callable[[Sequence[dict], dict, int], Sample]):
        self.respond = respond
        self.calls: list[tuple[list[dict], dict]] = []

    async def __call__(self, messages, **kwargs) -> list[Sample]:
        self.calls.append((list(messages), dict(kwargs)))
        n = kwargs.get("n", 1)
        return [self.respond(messages, kwargs, i) for i in range(n)]
