"""Lexical and numeric meaning tests: the free short-circuit in front of every backend,
and the ``lexical`` backend on its own.

Normalisation is NQ-Open's (Lee et al. 2019; shared/data/README.md): lowercase,
drop punctuation, drop the articles a/an/the, collapse white space.

    normalize("The  Eiffel Tower!")          -> "eiffel tower"
    token_f1("eiffel tower", "tower")        -> 0.667
    numbers_disagree("27 + 82 = 109", "109") -> False   (last numbers agree)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from detectors.labels import normalize_answer as normalize  # NQ-Open normalisation
from detectors.semantic.backend import EntailmentBatch

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_STOPWORDS = frozenset(
    "is are was were be been being am it its this that these those of in on at to for from "
    "by with as and or but so not no yes i you he she we they me him her us them my your his "
    "their our has have had do does did will would can could should there here which who "
    "what when where why how about into than then also very just".split()
)  # function words: shared by unrelated sentences, so they carry no meaning for F1


def extract_numbers(text: str) -> list[float]:
    """Every number in ``text`` in reading order, thousands separators removed."""
    values = []
    for match in _NUMBER.findall(text):
        try:
            values.append(float(match.replace(",", "")))
        except ValueError:  # a lone "-" or "," run cannot reach here, but stay safe
            continue
    return values


def numbers_disagree(a: str, b: str) -> bool:
    """The numeric guard: both answers state numbers and their final numbers differ.

    The final number is the one that carries the answer ("27 + 82 = 109" restates the
    operands first), so it is the one compared; answers without numbers are not judged.
    """
    num_a, num_b = extract_numbers(a), extract_numbers(b)
    return bool(num_a) and bool(num_b) and num_a[-1] != num_b[-1]


def content_tokens(text: str, question: str = "") -> list[str]:
    """Normalised tokens of ``text`` minus function words and words repeated from the
    question.

    Conditioning on the question: "the song was written by john" and "john" share their
    meaning once "song" and "written" (from "who wrote the song") are set aside. Falls back
    to all normalised tokens when nothing else is left.
    """
    tokens = normalize(text).split()
    asked = set(normalize(question).split())
    kept = [t for t in tokens if t not in asked and t not in _STOPWORDS]
    return kept or tokens


def token_f1(a_tokens: Sequence[str], b_tokens: Sequence[str]) -> float:
    """SQuAD token F1 = 2·P·R / (P + R) over bags of tokens; 1.0 for two empty answers."""
    if not a_tokens or not b_tokens:
        return float(not a_tokens and not b_tokens)
    common = sum((Counter(a_tokens) & Counter(b_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a_tokens), common / len(b_tokens)
    return 2 * precision * recall / (precision + recall)


def confident_equivalence(a: str, b: str) -> bool | None:
    """What lexical rules decide without a model: True, False, or None (ask the backend).

    Equal normalised text means the same meaning; a numeric disagreement means different
    meanings, whatever a model would say. Everything else is undecided.
    """
    if normalize(a) == normalize(b):
        return True
    if numbers_disagree(a, b):
        return False
    return None


@dataclass
class LexicalEntailment:
    """The ``lexical`` backend: token F1 (question words removed) above a threshold.

    Symmetric, so one direction per pair is enough. Never loads a model.
    """

    f1_threshold: float = 0.074  # chosen by bench/semantic_calibrate.py (docs/SEMANTIC.md)
    name: str = "lexical"
    symmetric: bool = True

    async def prepare(self, question: str, texts: Sequence[str]) -> None:
        return None

    async def entails_batch(
        self, question: str, pairs: Sequence[tuple[str, str]]
    ) -> EntailmentBatch:
        scores = [self.score(question, a, b) for a, b in pairs]
        return EntailmentBatch(tuple(s >= self.f1_threshold for s in scores), calls=0)

    def score(self, question: str, a: str, b: str) -> float:
        """Token F1 of the two answers' content tokens; 0 when their numbers disagree."""
        if numbers_disagree(a, b):
            return 0.0
        return token_f1(content_tokens(a, question), content_tokens(b, question))
