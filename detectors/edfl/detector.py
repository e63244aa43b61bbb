"""EDFL as a :class:`detectors.protocol.Detector`: prompt-only, started with the request.

    det = EdflPlugin().bind(EdflSettings(enabled=True), ProfileContext(h_star=0.05))
    started = det.start(exchange)          # the gate's run, concurrent with the answer
    judgement = await det.judge(exchange, answer, await started)
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from detectors.edfl.config import EdflConfig
from detectors.edfl.gate import EdflGate, EdflResult
from detectors.edfl.spec import EdflSettings
from detectors.offload import CpuLimiter
from detectors.protocol import (
    AnswerView,
    Exchange,
    Judgement,
    Needs,
    ProfileContext,
    Threshold,
    resolve_threshold,
)


def skeleton_kwargs(profile: ProfileContext) -> dict[str, Any]:
    """The masker's knobs from the profile (None skip words: the detectors' default)."""
    kwargs: dict[str, Any] = {"levels": tuple(profile.levels)}
    if profile.skip_words is not None:
        kwargs["skip_words"] = tuple(w.lower() for w in profile.skip_words)
    return kwargs


def edfl_config(settings: EdflSettings, profile: ProfileContext, **extra: Any) -> EdflConfig:
    """The gate's config dataclass; ``extra`` sets knobs policies do not expose."""
    return EdflConfig(h_star=profile.h_star, isr_threshold=settings.isr_threshold,
                      margin=settings.margin, clip=settings.clip, m=settings.m, n=settings.n,
                      mode=profile.masking, **skeleton_kwargs(profile), **extra)


def isr_threshold(settings: EdflSettings | Any) -> Threshold:
    """ISR threshold: the profile's when it sets one, else the toolkit's default 1.0."""
    own = settings.isr_threshold if "isr_threshold" in settings.model_fields_set else None
    return resolve_threshold(own, None, 1.0, score="isr")


class EdflPlugin:
    """The gates, one per config (each keeps its decision cache)."""

    def __init__(self, cpu: CpuLimiter | None = None):
        self.cpu = cpu or CpuLimiter(limit=2)
        self._gates: dict[EdflConfig, EdflGate] = {}

    def gate(self, config: EdflConfig) -> EdflGate:
        if config not in self._gates:
            self._gates[config] = EdflGate(config, cpu=self.cpu)
        return self._gates[config]

    def bind(self, settings: EdflSettings, profile: ProfileContext) -> EdflDetector:
        return EdflDetector(self.gate(edfl_config(settings, profile)), isr_threshold(settings))


@dataclass(frozen=True)
class EdflDetector:
    gate: EdflGate
    threshold: Threshold
    name: str = "edfl"
    needs: Needs = Needs(prompt=True, sampler=True)

    def start(self, exchange: Exchange) -> Awaitable[EdflResult]:
        return self.gate.run(exchange.messages, exchange.sampler, model=exchange.model)

    async def judge(self, exchange: Exchange, answer: AnswerView,
                    started: EdflResult) -> Judgement:
        return Judgement("edfl", started.verdict, started.risk, self.threshold,
                         detail=started.to_dict())
