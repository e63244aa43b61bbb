"""The interface every entailment backend implements (see entailment.py for the list)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EntailmentBatch:
    """A backend's answer for a batch of ordered (premise, hypothesis) pairs."""

    entails: tuple[bool, ...]  # one per pair, in order
    calls: int = 0  # model forward passes or upstream requests actually made
    cache_hits: int = 0  # pairs answered from the backend's cache, free
    tokens: int = 0  # upstream tokens spent (LLM judge only)


class Entailment(Protocol):
    name: str
    symmetric: bool  # True when entails(a, b) == entails(b, a), so one direction suffices

    async def prepare(self, question: str, texts: Sequence[str]) -> None:
        """Precompute what the texts need in one batch (e.g. embeddings); may do nothing."""

    async def entails_batch(
        self, question: str, pairs: Sequence[tuple[str, str]]
    ) -> EntailmentBatch: ...
