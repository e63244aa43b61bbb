"""The semantic gate's registration: its settings and what it needs (no model import)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from detectors.protocol import DetectorSettings, DetectorSpec, Needs, lazy


class SemanticSettings(DetectorSettings):
    """The semantic-entropy gate: M sampled answers clustered by bidirectional entailment."""

    OVERRIDABLE: ClassVar[tuple[str, ...]] = (  # knobs a request header may set (m is not
        # one: headers ignore case, so it would collide with M)
        "enabled", "M", "temperature", "isr_threshold", "margin", "entailment", "delta_mode")

    enabled: bool = False  # off unless a profile asks: it samples M + m·3 extra answers
    M: int = Field(10, ge=2, le=64)  # answers sampled for the full prompt (Farquhar et al.)
    m: int = Field(4, ge=1, le=32)  # skeleton prompts whose answers form the prior
    skeleton_samples: int = Field(3, ge=1, le=16)  # answers sampled per skeleton prompt
    max_tokens: int = Field(64, ge=1, le=4096)  # per sampled answer (short QA needs fewer)
    temperature: float = Field(1.0, gt=0.0, le=2.0)  # sampling temperature of those answers
    seed: int | None = Field(0, ge=0)  # the answers' sampling seeds start here (one per
    # answer, so they still differ): the same prompt gets the same verdict; null: unseeded
    isr_threshold: float = Field(1.0, gt=0.0)  # answer needs ISR >= this
    margin: float = Field(0.0, ge=0.0)  # extra nats: answer needs Δ̄ >= B2T + margin
    entailment: Literal["nli", "llm", "embedding", "lexical"] = "embedding"  # clusterer;
    # embedding = all-MiniLM-L6-v2 from a local package, no weights download
    nli_model_path: str | None = Field(None, validate_default=True)  # local directory of
    # an NLI cross-encoder (nli only)
    delta_mode: Literal["kl", "llr"] = "llr"  # Δ̄ as multi-class KL or 1-D log-ratio of the
    # top meaning (stable when cluster supports differ)

    @field_validator("nli_model_path")
    @classmethod
    def _nli_needs_a_model(cls, path: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("entailment") == "nli" and not path:
            raise ValueError("entailment 'nli' needs nli_model_path (a local directory; "
                             "weights are never downloaded)")
        return path


def semantic_features(detail: Mapping[str, Any]) -> Mapping[str, float | None]:
    """The normalised semantic entropy (risk) and the entropies over both cluster masses."""
    return {"semantic": detail.get("risk"), "semantic_entropy": detail.get("entropy_count"),
            "semantic_entropy_prob": detail.get("entropy_prob")}


SPEC = DetectorSpec(
    name="semantic",
    settings=SemanticSettings,
    needs=Needs(answer_text=True, prompt=True, sampler=True),
    load=lazy("detectors.semantic.detector:SemanticPlugin"),
    description="semantic entropy of M sampled answers, with a skeleton prior",
    features=("semantic", "semantic_entropy", "semantic_entropy_prob"),
    feature_values=semantic_features,
)
