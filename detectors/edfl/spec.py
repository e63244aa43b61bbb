"""EDFL's registration: its settings and what it needs (no gate import here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from detectors.protocol import DetectorSettings, DetectorSpec, Needs, lazy


class EdflSettings(DetectorSettings):
    """The EDFL / ISR / B2T skeleton gate (1 + m short upstream calls, or (1 + m)·n)."""

    enabled: bool = False  # off unless a profile asks: it costs extra upstream calls
    isr_threshold: float = Field(1.0, gt=0.0)  # answer needs ISR = Δ̄ / B2T >= this
    margin: float = Field(0.0, ge=0.0)  # extra nats: answer needs Δ̄ >= B2T + margin
    m: int = Field(6, ge=1, le=32)  # skeleton prompts per request (the toolkit's default)
    n: int = Field(7, ge=1, le=64)  # sampled decisions per prompt when logprobs can't be used
    clip: float = Field(12.0, gt=0.0)  # B: Δ̄ = mean_k clip(log P − log S_k, −B, B), nats


def edfl_features(detail: Mapping[str, Any]) -> Mapping[str, float | None]:
    """EDFL's RoH bound and −ISR (capped at ±1e3; an infinite ISR is written as null)."""
    isr = detail.get("isr")
    return {"edfl": detail.get("risk"),
            "edfl_neg_isr": -min(float(isr), 1e3) if isr is not None else None}


SPEC = DetectorSpec(
    name="edfl",
    settings=EdflSettings,
    needs=Needs(prompt=True, sampler=True),
    load=lazy("detectors.edfl.detector:EdflPlugin"),
    description="EDFL: ANSWER/REFUSE decision probabilities of the prompt and its skeletons",
    features=("edfl", "edfl_neg_isr"),
    feature_values=edfl_features,
)
