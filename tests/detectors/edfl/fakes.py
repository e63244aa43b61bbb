"""In-memory samplers for the EDFL gate's tests: they answer the decision question with
given label probabilities, count what the gate asked for, and can sleep like an upstream."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from detectors.edfl.decision import FENCE_CLOSE, FENCE_OPEN
from detectors.sampling import Sample, TokenLogprob


def conversation_of(decision_prompt) -> str:
    """The fenced conversation inside a decision prompt (last user message)."""
    text = decision_prompt[-1]["content"]
    return text.split(FENCE_OPEN, 1)[1].split(FENCE_CLOSE, 1)[0]


def label_top(p_answer: float, mass: float = 1.0, answer: str = " answer", refuse: str = " refuse"):
    """A top-logprob list with ``mass`` on the two labels, split p_answer : 1 − p_answer."""
    entries = []
    if p_answer > 0:
        entries.append((answer, math.log(mass * p_answer)))
    if p_answer < 1:
        entries.append((refuse, math.log(mass * (1 - p_answer))))
    if mass < 1:
        entries.append((" The", math.log(1 - mass)))
    return tuple(sorted(entries, key=lambda e: -e[1]))


class LabelSampler:
    """``p_answer(conversation_text) -> float``; logprob calls return label logprobs with
    ``mass`` on the labels, sampled calls return round(p·n) "answer" texts, rest "refuse"."""

    def __init__(
        self,
        p_answer: Callable[[str], float],
        *,
        mass: float = 1.0,
        logprobs: bool = True,
        delay: float = 0.0,
        prompt_tokens: int = 40,
    ):
        self.p_answer, self.mass, self.logprobs = p_answer, mass, logprobs
        self.delay, self.prompt_tokens = delay, prompt_tokens
        self.calls: list[dict] = []
        self.in_flight = self.max_in_flight = 0

    async def __call__(self, messages, **kwargs) -> list[Sample]:
        self.calls.append(dict(kwargs))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            p = self.p_answer(conversation_of(messages))
            n = kwargs.get("n", 1)
            if kwargs.get("top_logprobs", 0) > 0 and self.logprobs:
                top = label_top(p, self.mass)
                token = TokenLogprob(top[0][0], top[0][1], top)
                return [Sample(top[0][0], (token,), "length", self.prompt_tokens, 1)] * n
            k = round(p * n)
            texts = ["answer"] * k + ["refuse"] * (n - k)
            return [Sample(t, None, "stop", self.prompt_tokens, 1) for t in texts]
        finally:
            self.in_flight -= 1


def masked(p_full: float, p_skeleton: float) -> Callable[[str], float]:
    """P(answer) = p_skeleton when the conversation has a mask token, else p_full."""
    return lambda text: p_skeleton if "[MASK]" in text else p_full
