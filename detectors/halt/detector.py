"""HALT as a :class:`detectors.protocol.Detector`: the scorer's risk, the resolved
threshold (profile → the checkpoint's validation-tuned value → 0.5), prefixes included.

    plugin = HaltPlugin.load_default()          # loads the checkpoint once
    det = plugin.bind(HaltSettings(), ProfileContext())
    judgement = await det.judge(exchange, answer, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from detectors.halt.scorer import HaltResult, HaltScorer
from detectors.halt.spec import HaltSettings
from detectors.protocol import (
    AnswerView,
    Exchange,
    Judgement,
    MissingLogprobs,
    Needs,
    ProfileContext,
    Threshold,
    resolve_threshold,
    verdict_at,
)

DEFAULT_THRESHOLD = 0.5  # a checkpoint without a tuned threshold: P(hallucinated) >= 0.5


def judgement(result: HaltResult, threshold: Threshold) -> Judgement:
    detail = result.to_dict()
    detail.pop("threshold", None)
    detail["checkpoint_threshold"] = result.threshold
    return Judgement("halt", verdict_at(result.risk, threshold), result.risk, threshold,
                     detail=detail)


class HaltPlugin:
    """The loaded checkpoint, shared by every profile."""

    def __init__(self, scorer: HaltScorer):
        self.scorer = scorer

    @classmethod
    def load_default(cls) -> HaltPlugin:
        return cls(HaltScorer.load_default())

    def bind(self, settings: HaltSettings, profile: ProfileContext) -> HaltDetector:
        return HaltDetector(self.scorer, settings)


@dataclass(frozen=True)
class HaltDetector:
    scorer: HaltScorer
    settings: HaltSettings
    name: str = "halt"
    needs: Needs = Needs(answer_logprobs=True)

    def threshold(self) -> Threshold:
        return resolve_threshold(self.settings.threshold, self.scorer.threshold,
                                 DEFAULT_THRESHOLD)

    def start(self, exchange: Exchange) -> None:
        return None

    async def judge(self, exchange: Exchange, answer: AnswerView, started: None) -> Judgement:
        if not answer.tokens:
            raise MissingLogprobs()
        return judgement(await self.scorer.score(answer.tokens), self.threshold())

    def prefix_threshold(self, profile_value: float | None) -> Threshold:
        """profile (`progressive.threshold`) → the checkpoint's prefix threshold (chosen on
        validation prefixes by bench/halt_prefix.py; its answer threshold when it has
        none) → the built-in default."""
        return resolve_threshold(profile_value, self.scorer.prefix_threshold,
                                 DEFAULT_THRESHOLD)

    async def judge_prefix(self, tokens: Sequence[dict], threshold: Threshold) -> Judgement:
        if not tokens:
            raise MissingLogprobs()
        return judgement(await self.scorer.score(tokens), threshold)
