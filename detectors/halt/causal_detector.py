"""Causal HALT as a :class:`detectors.protocol.Detector` and a streaming prefix judge.

    plugin = CausalHaltPlugin.load_default()       # the causal checkpoint, loaded once
    det = plugin.bind(CausalHaltSettings(), ProfileContext())
    stream = det.open_prefix_stream(det.prefix_threshold(None))
    judgement = await stream.feed(new_tokens)       # the new tokens only: O(new tokens)
    judgement = await stream.finish(rest)           # the whole answer, no re-read

Thresholds: the profile's value, else the checkpoint's (the whole-answer one tuned for
macro-F1 on validation; the prefix one chosen on validation prefixes by
bench/halt_prefix.py), else 0.5. A check's work is a few small tensor operations on its
new tokens, about what a thread hop costs, so it runs on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from detectors.halt.adapter import logprob_matrix
from detectors.halt.causal import CausalCheckpoint, CausalStream, CompiledCausal, load_causal
from detectors.halt.spec import CausalHaltSettings
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

NAME = "halt_causal"
DEFAULT_THRESHOLD = 0.5


def judgement(risk: float, n_tokens: int, threshold: Threshold, reused: bool) -> Judgement:
    return Judgement(NAME, verdict_at(risk, threshold), risk, threshold,
                     detail={"score": risk, "n_tokens": n_tokens, "streamed_state": reused})


class CausalHaltPlugin:
    """The loaded causal checkpoint, shared by every profile."""

    def __init__(self, checkpoint: CausalCheckpoint):
        self.checkpoint = checkpoint
        self.compiled = CompiledCausal(checkpoint.model)

    @classmethod
    def load_default(cls) -> CausalHaltPlugin:
        return cls(load_causal())

    def bind(self, settings: CausalHaltSettings, profile: ProfileContext) -> CausalHaltDetector:
        return CausalHaltDetector(self.checkpoint, self.compiled, settings)


@dataclass(frozen=True)
class CausalHaltDetector:
    checkpoint: CausalCheckpoint
    compiled: CompiledCausal
    settings: CausalHaltSettings
    name: str = NAME
    needs: Needs = Needs(answer_logprobs=True)

    def threshold(self) -> Threshold:
        return resolve_threshold(self.settings.threshold, self.checkpoint.threshold,
                                 DEFAULT_THRESHOLD)

    def start(self, exchange: Exchange) -> None:
        return None

    def _risk(self, tokens: Sequence | None) -> tuple[float, int]:
        matrix = logprob_matrix(tokens or ())
        if matrix.n_tokens == 0:
            raise MissingLogprobs()
        risk = CausalStream(self.compiled).feed(matrix.values)
        return float(risk), matrix.n_tokens

    async def judge(self, exchange: Exchange, answer: AnswerView, started: None) -> Judgement:
        risk, n = self._risk(answer.tokens)
        return judgement(risk, n, self.threshold(), reused=False)

    def prefix_threshold(self, profile_value: float | None) -> Threshold:
        """profile (`progressive.threshold`) → the checkpoint's prefix threshold → its
        whole-answer threshold → 0.5."""
        if profile_value is None and self.checkpoint.prefix_threshold is not None:
            return resolve_threshold(None, self.checkpoint.prefix_threshold,
                                     DEFAULT_THRESHOLD)
        return resolve_threshold(profile_value, self.checkpoint.threshold, DEFAULT_THRESHOLD)

    async def judge_prefix(self, tokens: Sequence[dict], threshold: Threshold) -> Judgement:
        risk, n = self._risk(tokens)
        return judgement(risk, n, threshold, reused=False)

    def open_prefix_stream(self, threshold: Threshold) -> CausalHaltStream:
        return CausalHaltStream(CausalStream(self.compiled), threshold,
                                self.threshold())


class CausalHaltStream:
    """:class:`detectors.protocol.PrefixStream` of one answer over :class:`CausalStream`."""

    def __init__(self, state: CausalStream, threshold: Threshold, answer_threshold: Threshold):
        self.state, self.threshold = state, threshold
        self.answer_threshold = answer_threshold  # what the whole answer's judgement uses

    def _read(self, tokens: Sequence[dict]) -> float:
        if tokens:
            self.state.feed(logprob_matrix(tokens).values)
        if self.state.risk is None:
            raise MissingLogprobs()
        return self.state.risk

    async def feed(self, tokens: Sequence[dict]) -> Judgement:
        return judgement(self._read(tokens), self.state.steps, self.threshold, reused=False)

    async def finish(self, tokens: Sequence[dict]) -> Judgement:
        """The whole answer's judgement: the carried state after the last ``tokens``."""
        return judgement(self._read(tokens), self.state.steps, self.answer_threshold,
                         reused=True)
