"""The labelling rules of shared/data/README.md, in one place for every detector, bench
and evaluation: is a generated answer correct?

- text answers: NQ-Open normalisation (lowercase, drop punctuation, drop the articles
  a/an/the, collapse white space), then correct when a normalised gold answer is contained
  in the normalised prediction;
- numeric answers (SVAMP, arithmetic): the LAST number in the prediction, thousands commas
  removed, equals the gold value (small models restate the operands first).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def normalize_answer(text: str) -> str:
    """NQ-Open normalisation: lowercase, drop punctuation and articles, collapse spaces."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def last_number(text: str) -> float | None:
    """The last number in ``text`` (thousands commas removed), None when there is none."""
    found = _NUMBER.findall(text.replace(",", ""))
    return float(found[-1]) if found else None


def contains_gold(answer: str, golds: Iterable) -> bool:
    """A normalised gold answer is contained in the normalised ``answer``."""
    prediction = normalize_answer(answer)
    return any(g and g in prediction for g in (normalize_answer(str(x)) for x in golds))


def number_matches(answer: str, golds: Iterable) -> bool:
    """The last number of ``answer`` equals one of the gold values."""
    value = last_number(answer)
    return value is not None and any(abs(value - float(g)) < 1e-6 for g in golds)
