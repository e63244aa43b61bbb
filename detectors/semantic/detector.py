"""The semantic gate as a :class:`detectors.protocol.Detector`: samples drawn at prompt
time (concurrently with the answer), clustered and judged once the answer is in.

    det = SemanticPlugin().bind(SemanticSettings(enabled=True), ProfileContext())
    started = det.start(exchange)          # the M + m·s sampled answers
    judgement = await det.judge(exchange, answer, await started)
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from detectors.bounds import PromptBounds, bound_text
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
from detectors.sampling import prompt_text
from detectors.semantic.config import SemanticConfig
from detectors.semantic.gate import SampleSet, SemanticGate
from detectors.semantic.spec import SemanticSettings

CODE_INSTRUCTION = "Reply with exactly one fenced code block and no text outside it."
PARAGRAPH_INSTRUCTION = "Reply with exactly one paragraph of plain prose."
_CODE_REQUEST = re.compile(
    r"```|\b(?:code|function|script|program|implement|class|method|regex|sql|query|bug|"
    r"refactor|compile|python|javascript|typescript|java|rust|golang|bash|c\+\+)\b",
    re.IGNORECASE)


def sample_instruction(output_constraint: str, prompt: str) -> str | None:
    """The system instruction for the gate's own samples, or None (no constraint).

    ``code_or_paragraph`` asks for one code block when the prompt is a code request and
    for one paragraph otherwise, so stylistic variety does not split meanings (toolkit
    overview §4, step 2). It shapes the samples the gate draws, not the client's answer.
    """
    if output_constraint != "code_or_paragraph":
        return None
    return CODE_INSTRUCTION if _CODE_REQUEST.search(prompt) else PARAGRAPH_INSTRUCTION


def semantic_config(settings: SemanticSettings, profile: ProfileContext,
                    **extra: Any) -> SemanticConfig:
    """The gate's config dataclass for these settings under ``profile``."""
    skeleton: dict[str, Any] = {"levels": tuple(profile.levels)}
    if profile.skip_words is not None:
        skeleton["skip_words"] = tuple(w.lower() for w in profile.skip_words)
    return SemanticConfig(M=settings.M, m=settings.m, skeleton_samples=settings.skeleton_samples,
                          max_tokens=settings.max_tokens, temperature=settings.temperature,
                          sample_seed=settings.seed, h_star=profile.h_star,
                          isr_threshold=settings.isr_threshold, margin=settings.margin,
                          backend=settings.entailment, nli_model_path=settings.nli_model_path,
                          delta_mode=settings.delta_mode, skeleton_mode=profile.masking,
                          **skeleton, **extra)


class SemanticPlugin:
    """The gates, one per config (each keeps its entailment backend and judge cache)."""

    def __init__(self, cpu: CpuLimiter | None = None):
        self.cpu = cpu or CpuLimiter(limit=2)
        self._gates: dict[SemanticConfig, SemanticGate] = {}

    def bind(self, settings: SemanticSettings, profile: ProfileContext) -> SemanticDetector:
        config = semantic_config(settings, profile)
        if config not in self._gates:
            self._gates[config] = SemanticGate(config, cpu=self.cpu)
        own = settings.isr_threshold if "isr_threshold" in settings.model_fields_set else None
        return SemanticDetector(self._gates[config], profile.output_constraint,
                                resolve_threshold(own, None, 1.0, score="isr"))


@dataclass(frozen=True)
class SemanticDetector:
    gate: SemanticGate
    output_constraint: str
    threshold: Threshold
    name: str = "semantic"
    needs: Needs = Needs(answer_text=True, prompt=True, sampler=True)

    def start(self, exchange: Exchange) -> Awaitable[SampleSet]:
        messages = list(exchange.messages)
        instruction = sample_instruction(
            self.output_constraint, bound_text(prompt_text(messages), PromptBounds().max_chars))
        if instruction:
            messages = [{"role": "system", "content": instruction}, *messages]
        return self.gate.sample(messages, exchange.sampler)

    async def judge(self, exchange: Exchange, answer: AnswerView,
                    started: SampleSet) -> Judgement:
        result = await self.gate.analyse(started, self.gate.backend_for(exchange.sampler),
                                         answer.text)
        return Judgement("semantic", result.verdict, result.risk, self.threshold,
                         detail=result.to_dict(), replacement=result.chosen_answer)
