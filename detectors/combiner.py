"""A learned, calibrated combiner: every detector's continuous score and the free answer
features in, one calibrated P(hallucinated) out.

    combiner = LearnedCombiner.load("combiner.json")       # fitted by `hallgate calibrate
    risk = combiner.risk({"halt": 0.7, "edfl": 0.4, ...})   #   --fit-combiner`

OR-ing binary verdicts throws the ranking away (docs/EVALUATION.md: `any` scored AUROC
0.62 where −mean token logprob alone scored 0.87); a logistic regression over the scores
keeps it, and Platt's sigmoid (Platt 1999) or an isotonic map (Zadrozny & Elkan 2002) of
its logit turns it into a probability, so that Learn-then-Test can threshold it for a
target risk. Platt is the default: with tens of correct answers an isotonic map has a
handful of steps, and the ties it makes cost ranking (AUROC) that the logit had. Inference is numpy
only; scikit-learn is needed to fit (evaluation/combiner.py), never to serve.

A feature the combiner needs but the request lacks (its detector failed open, the
upstream gave no logprobs) takes its training mean: the combiner then leans on the others.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from detectors.registry import REGISTRY

# the features read off the answer itself (no detector produces them)
ANSWER_FEATURES: tuple[str, ...] = (
    "neg_mean_logprob",  # −mean token logprob of the answer
    "neg_min_logprob",  # −min token logprob of the answer
    "answer_tokens",  # answer length in tokens
)


def known_features() -> dict[str, str | None]:
    """Feature name -> the detector that produces it (None: read off the answer itself).
    Each registered detector declares its own (detectors/registry.py; default: its risk
    under its name)."""
    return {**REGISTRY.feature_owners(), **dict.fromkeys(ANSWER_FEATURES)}


def linear_score(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: float) -> float:
    """The logistic regression's logit on standardised features:
    z = b + Σ_i w_i · (x_i − μ_i) / σ_i."""
    return float(intercept + np.dot(coef, (x - mean) / scale))


def platt_probability(z: float, a: float, b: float) -> float:
    """P(hallucinated | z) = σ(a·z + b), Platt's sigmoid fitted on out-of-fold logits
    (Platt 1999): strictly increasing, so it keeps every distinction the logit makes."""
    return float(1.0 / (1.0 + math.exp(-(a * z + b))))


def isotonic_probability(z: float, knots_x: np.ndarray, knots_y: np.ndarray) -> float:
    """P(hallucinated | z): the fitted isotonic (monotone step) map of the logit, read by
    linear interpolation between its knots and clipped at both ends."""
    return float(np.interp(z, knots_x, knots_y))


def answer_features(tokens: Sequence[dict] | None) -> dict[str, float | None]:
    """The free one-number features of an answer from its ``logprobs.content`` entries."""
    logprobs = [float(t["logprob"]) for t in tokens or () if t.get("logprob") is not None
                and math.isfinite(float(t["logprob"]))]
    if not logprobs:
        return {"neg_mean_logprob": None, "neg_min_logprob": None, "answer_tokens": None}
    return {"neg_mean_logprob": -sum(logprobs) / len(logprobs),
            "neg_min_logprob": -min(logprobs), "answer_tokens": float(len(logprobs))}


def detector_features(details: Mapping[str, Mapping]) -> dict[str, float | None]:
    """The detector features from each detector's result dict (its ``to_dict()``, as the
    decision and the audit log carry it); a detector absent from ``details`` gives None."""
    out: dict[str, float | None] = {}
    for spec in REGISTRY:
        out.update(spec.values(details.get(spec.name) or {}))
    return out


@dataclass(frozen=True)
class LearnedCombiner:
    features: tuple[str, ...]  # names from FEATURES, in coefficient order
    impute: tuple[float, ...]  # value of a missing feature: its training mean
    mean: tuple[float, ...]  # standardisation μ_i
    scale: tuple[float, ...]  # standardisation σ_i (> 0)
    coef: tuple[float, ...]  # w_i
    intercept: float  # b
    knots_x: tuple[float, ...]  # isotonic map: logit knots, increasing (empty with platt)
    knots_y: tuple[float, ...]  # ... and P(hallucinated) at each, non-decreasing
    fitted_on: dict  # provenance: recording, items, split, seed, validation AUROC
    platt: tuple[float, float] | None = None  # (a, b) of σ(a·z + b), instead of the knots

    def __post_init__(self) -> None:
        known = known_features()
        unknown = [f for f in self.features if f not in known]
        if unknown:
            raise ValueError(f"unknown combiner features {unknown} (known: {list(known)})")
        n = len(self.features)
        if not all(len(v) == n for v in (self.impute, self.mean, self.scale, self.coef)):
            raise ValueError("features, impute, mean, scale and coef must have equal length")
        if self.platt is not None:
            if len(self.platt) != 2:
                raise ValueError("platt is the pair (a, b) of sigmoid(a*z + b)")
        elif len(self.knots_x) != len(self.knots_y) or not self.knots_x:
            raise ValueError("the isotonic map needs matching, non-empty knots")

    def detectors(self) -> set[str]:
        """The detectors whose scores this combiner reads."""
        owners = known_features()
        return {d for f in self.features if (d := owners[f]) is not None}

    def risk(self, values: Mapping[str, float | None]) -> float:
        """Calibrated P(hallucinated) for one answer's feature values."""
        x = np.array([v if (v := values.get(f)) is not None and math.isfinite(v) else m
                      for f, m in zip(self.features, self.impute, strict=True)],
                     dtype=np.float64)  # (F,)
        z = linear_score(x, np.asarray(self.mean), np.asarray(self.scale),
                         np.asarray(self.coef), self.intercept)
        if self.platt is not None:
            return platt_probability(z, *self.platt)
        return isotonic_probability(z, np.asarray(self.knots_x), np.asarray(self.knots_y))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LearnedCombiner:
        data = json.loads(Path(path).read_text())
        tuples = {k: tuple(v) for k, v in data.items() if isinstance(v, list)}
        return cls(**{**data, **tuples})
