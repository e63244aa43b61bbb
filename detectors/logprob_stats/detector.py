"""The logprob scores as :class:`detectors.protocol.Detector` plug-ins.

Thresholds resolve as every detector's do: the profile's value, else the one calibrated
for the model on a validation split (``calibration.json`` beside this module, written by
``hallgate calibrate-logprob-stats``), else 0.5.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detectors.logprob_stats import stats
from detectors.logprob_stats.spec import LogprobStatSettings
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

CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration.json"
PREFIX_FILE = Path(__file__).resolve().parent / "prefix.json"  # prefix thresholds, chosen
# on validation prefixes by bench/halt_prefix.py
DEFAULT_THRESHOLD = 0.5


@functools.lru_cache(maxsize=4)
def calibrated_thresholds(path: Path = CALIBRATION_FILE) -> dict[str, float]:
    """``{detector: threshold}`` chosen on validation; empty when not calibrated."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {name: float(entry["threshold"]) for name, entry in data["detectors"].items()}


def judgement(name: str, state: stats.RunningStats, threshold: Threshold) -> Judgement:
    """The judgement of detector ``name`` from the scores of the tokens folded in."""
    raw, risks = state.raw(), state.scores()
    if raw is None or risks is None:
        raise MissingLogprobs()
    risk = risks[name]
    return Judgement(name, verdict_at(risk, threshold), risk, threshold, detail={"scores": raw})


@functools.lru_cache(maxsize=4)
def prefix_thresholds(path: Path = PREFIX_FILE) -> dict[str, float]:
    """``{detector: prefix threshold}`` chosen on validation prefixes; empty when none."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {name: float(entry["threshold"]) for name, entry in data["detectors"].items()}


@dataclass(frozen=True)
class LogprobStatDetector:
    name: str
    settings: LogprobStatSettings
    calibrated: float | None
    needs: Needs = Needs(answer_logprobs=True)

    def threshold(self) -> Threshold:
        return resolve_threshold(self.settings.threshold, self.calibrated, DEFAULT_THRESHOLD)

    def start(self, exchange: Exchange) -> None:
        return None

    def _judge(self, tokens: Sequence | None, threshold: Threshold) -> Judgement:
        return judgement(self.name, stats.RunningStats().add(tokens or ()), threshold)

    async def judge(self, exchange: Exchange, answer: AnswerView, started: None) -> Judgement:
        return self._judge(answer.tokens, self.threshold())

    def prefix_threshold(self, profile_value: float | None) -> Threshold:
        """profile (`progressive.threshold`) → the prefix threshold chosen on validation
        prefixes (``prefix.json``) → the answer threshold's own resolution."""
        if profile_value is not None:
            return resolve_threshold(profile_value, None, DEFAULT_THRESHOLD)
        chosen = prefix_thresholds().get(self.name)
        if chosen is not None:
            return resolve_threshold(None, chosen, DEFAULT_THRESHOLD)
        return self.threshold()

    async def judge_prefix(self, tokens: Sequence[dict], threshold: Threshold) -> Judgement:
        return self._judge(tokens, threshold)

    def open_prefix_stream(self, threshold: Threshold) -> LogprobStatStream:
        """A streamed answer's prefixes, each token read once (running sums)."""
        return LogprobStatStream(self.name, threshold, self.threshold())


class LogprobStatStream:
    """:class:`detectors.protocol.PrefixStream` of one answer: the running sums of
    :class:`stats.RunningStats`, so a check costs the new tokens only."""

    def __init__(self, name: str, threshold: Threshold, answer_threshold: Threshold):
        self.name, self.threshold = name, threshold
        self.answer_threshold = answer_threshold  # what the whole answer's judgement uses
        self.state = stats.RunningStats()

    async def feed(self, tokens: Sequence[dict]) -> Judgement:
        return judgement(self.name, self.state.add(tokens), self.threshold)

    async def finish(self, tokens: Sequence[dict]) -> Judgement:
        """The whole answer's judgement from the running sums (the rest folded in)."""
        return judgement(self.name, self.state.add(tokens), self.answer_threshold)


@dataclass(frozen=True)
class LogprobStatPlugin:
    name: str

    def bind(self, settings: LogprobStatSettings, profile: ProfileContext,
             ) -> LogprobStatDetector:
        return LogprobStatDetector(self.name, settings, calibrated_thresholds().get(self.name))


def plugin_mean_logprob() -> LogprobStatPlugin:
    return LogprobStatPlugin("mean_logprob")


def plugin_min_logprob() -> LogprobStatPlugin:
    return LogprobStatPlugin("min_logprob")


def plugin_topk_entropy() -> LogprobStatPlugin:
    return LogprobStatPlugin("topk_entropy")


def plugin_seq_prob() -> LogprobStatPlugin:
    return LogprobStatPlugin("seq_prob")
