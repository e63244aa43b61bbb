"""The ``llm`` backend: the upstream model judges entailment, at temperature 0, through
the Sampler, with an LRU cache (hits are free and counted).

The prompt is the one of Farquhar et al. 2024 (EntailmentLLM): the reply is read as
entailment when it names "entailment" before any other label.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from detectors.sampling import Sampler
from detectors.semantic.backend import EntailmentBatch

JUDGE_PROMPT = (
    "We are evaluating answers to the question \"{question}\"\n"
    "Here are two possible answers:\n"
    "Possible Answer 1: {premise}\n"
    "Possible Answer 2: {hypothesis}\n"
    "Does Possible Answer 1 semantically entail Possible Answer 2? "
    "Respond with entailment, contradiction, or neutral."
)
_LABELS = ("entailment", "contradiction", "neutral")


def read_judgement(reply: str) -> bool:
    """True when "entailment" is the first of the three labels named in the reply."""
    text = reply.lower()
    found = {label: text.find(label) for label in _LABELS if label in text}
    return bool(found) and min(found, key=found.get) == "entailment"


@dataclass
class JudgeCache:
    """LRU map (question, premise, hypothesis) -> entails; share one per gate."""

    max_size: int = 8192  # judgements kept
    _items: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def get(self, key: tuple[str, str, str]) -> bool | None:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        return None

    def put(self, key: tuple[str, str, str], value: bool) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)


@dataclass
class LLMJudgeEntailment:
    """Directional entailment judged by the upstream (one request per uncached pair)."""

    sampler: Sampler  # the route's sampler; the judge uses the route's model
    cache: JudgeCache = field(default_factory=JudgeCache)  # pass the gate's to share it
    max_tokens: int = 8  # the label is the first word of a compliant reply
    name: str = "llm"
    symmetric: bool = False

    async def prepare(self, question: str, texts: Sequence[str]) -> None:
        return None

    async def entails_batch(
        self, question: str, pairs: Sequence[tuple[str, str]]
    ) -> EntailmentBatch:
        keys = [(question, a, b) for a, b in pairs]
        known = {k: self.cache.get(k) for k in keys}
        missing = [k for k in dict.fromkeys(keys) if known[k] is None]
        replies = await asyncio.gather(*(self._ask(*k) for k in missing))
        tokens = 0
        for key, (entails, spent) in zip(missing, replies, strict=True):
            self.cache.put(key, entails)
            known[key] = entails
            tokens += spent
        asked = set(missing)
        hits = sum(1 for k in keys if k not in asked)
        return EntailmentBatch(
            tuple(bool(known[k]) for k in keys), calls=len(missing), cache_hits=hits,
            tokens=tokens,
        )

    async def _ask(self, question: str, premise: str, hypothesis: str) -> tuple[bool, int]:
        prompt = JUDGE_PROMPT.format(question=question, premise=premise, hypothesis=hypothesis)
        (sample,) = await self.sampler(
            [{"role": "user", "content": prompt}], n=1, temperature=0.0,
            max_tokens=self.max_tokens, top_logprobs=0,
        )
        return read_judgement(sample.text), sample.prompt_tokens + sample.completion_tokens
