"""The Detector protocol: what every detector declares, receives and returns.

    spec = DetectorSpec(name="toy", settings=ToySettings, needs=Needs(answer_text=True),
                        load=lambda: ToyPlugin())          # registered once (registry.py)
    plugin = spec.load()                                   # once per gateway (weights, caches)
    det = plugin.bind(settings, profile)                   # per profile: settings applied
    started = det.start(exchange)                          # prompt time (None: nothing to do)
    judgement = await det.judge(exchange, answer, started) # answer time -> Judgement
    judgement = await det.judge_prefix(tokens, threshold)  # progressive streams (optional)
    stream = open_prefix_stream(det, threshold)            # one streamed answer's prefixes
    judgement = await stream.feed(new_tokens)              # only the tokens since the last
    judgement = await stream.finish(rest)                  # the whole answer, when the
                                                           # stream's state is its judgement

A :class:`Judgement` is the one result type: ``risk`` in [0, 1] (higher = riskier),
``verdict``, the :class:`Threshold` behind the verdict and where it came from, the
:class:`Cost` of producing it, and the detector's own JSON-safe ``detail``. A detector
that cannot judge raises; :class:`MissingLogprobs` when the answer has no token logprobs.
The route's fail mode decides what an exception means (policies/decision.py).

Nothing here speaks HTTP: the exchange carries plain messages, the answer's
``logprobs.content`` entries and a :class:`detectors.sampling.Sampler`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from detectors.sampling import Message, Sampler
from detectors.verdict import Verdict

ThresholdSource = Literal["profile", "certified", "calibrated", "default"]


class MissingLogprobs(ValueError):
    """The answer came without token logprobs, so a detector that reads them cannot judge."""

    def __init__(self, message: str = "the upstream returned no token logprobs", indices=()):
        super().__init__(message)
        self.indices = tuple(indices)  # positions in a batch that had none


@dataclass(frozen=True)
class Needs:
    """What a detector reads from the exchange."""

    answer_logprobs: bool = False  # the answer's token logprobs (the upstream is asked)
    answer_text: bool = False  # the answer's text (it judges only once the answer is in)
    prompt: bool = False  # the prompt messages
    sampler: bool = False  # extra completions through the Sampler (costs upstream calls)

    @property
    def answer(self) -> bool:
        """It judges the answer (not the prompt alone)."""
        return self.answer_logprobs or self.answer_text


@dataclass(frozen=True)
class Threshold:
    """The threshold behind a verdict and where it came from."""

    value: float
    source: ThresholdSource  # profile value, certified for the profile's target risk by
    # the model's bundle, calibrated for the model, or built-in default
    score: str = "risk"  # what it is compared with: "risk" (abstain iff risk >= value) or
    # the detector's own statistic ("isr": answer iff ISR >= value)

    def to_dict(self) -> dict:
        return {"value": self.value, "source": self.source, "score": self.score}


def resolve_threshold(profile: float | None, calibrated: float | None, default: float,
                      score: str = "risk") -> Threshold:
    """The one resolution order: the profile's value, else the value calibrated for the
    model (stored with the detector's calibration), else the built-in default."""
    if profile is not None:
        return Threshold(float(profile), "profile", score)
    if calibrated is not None:
        return Threshold(float(calibrated), "calibrated", score)
    return Threshold(float(default), "default", score)


def verdict_at(risk: float, threshold: Threshold) -> Verdict:
    """ABSTAIN iff risk >= threshold (a risk threshold)."""
    return Verdict.ABSTAIN if risk >= threshold.value else Verdict.ANSWER


@dataclass(frozen=True)
class Cost:
    """What one judgement spent (the orchestrator fills in what it measures)."""

    upstream_calls: int = 0  # extra upstream calls (the answer's own call excluded)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ms: float = 0.0  # wall time of the detector's work, prompt-time start included

    def to_dict(self) -> dict:
        return {"upstream_calls": self.upstream_calls, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "ms": round(self.ms, 3)}


@dataclass(frozen=True)
class Judgement:
    """One detector's result."""

    detector: str
    verdict: Verdict
    risk: float  # hallucination risk in [0, 1], higher = riskier
    threshold: Threshold | None  # None: the verdict comes from no single threshold
    cost: Cost = Cost()
    detail: Mapping[str, Any] = field(default_factory=dict)  # JSON-safe, detector's own
    replacement: str | None = None  # an answer the detector prefers to the upstream's (the
    # semantic gate's top-meaning answer); used only under `action: abstain`

    def with_cost(self, cost: Cost) -> Judgement:
        return replace(self, cost=cost)

    def with_threshold(self, threshold: Threshold) -> Judgement:
        """The judgement re-read against another risk threshold."""
        return replace(self, threshold=threshold, verdict=verdict_at(self.risk, threshold))

    def to_dict(self) -> dict:
        return {**self.detail, "detector": self.detector, "verdict": self.verdict.value,
                "risk": self.risk if math.isfinite(self.risk) else None,
                "threshold": self.threshold.value if self.threshold else None,
                "threshold_source": self.threshold.source if self.threshold else None,
                "threshold_score": self.threshold.score if self.threshold else None,
                "cost": self.cost.to_dict()}


@dataclass(frozen=True)
class ProfileContext:
    """The profile-wide knobs detectors may read (besides their own settings)."""

    h_star: float = 0.05  # target hallucination rate
    masking: str = "auto"  # skeleton masking: auto | evidence | closed_book
    levels: tuple[float, ...] = (0.25, 0.35, 0.5, 0.65, 0.8, 0.9)  # masking levels, cycled
    skip_words: tuple[str, ...] | None = None  # None: the detectors' default task words
    output_constraint: str = "none"  # none | code_or_paragraph (the gates' own samples)


@dataclass(frozen=True)
class Exchange:
    """What a detector sees of the request (plain data)."""

    messages: Sequence[Message]
    sampler: Sampler  # this detector's own sampler (its calls are its cost)
    model: str | None = None  # the upstream model name


@dataclass(frozen=True)
class AnswerView:
    """The answer a client reads (choice 0)."""

    text: str
    tokens: Sequence[dict] | None  # logprobs.content entries; None: the upstream sent none


class DetectorSettings(BaseModel):
    """Base of every detector's settings model: strict, frozen, ``enabled`` first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False


class ThresholdedSettings(DetectorSettings):
    """Settings of a detector whose verdict is ``risk >= threshold``."""

    threshold: float | None = Field(None, ge=0.0, le=1.0)  # None: the calibrated value for
    # the model, else the detector's built-in default


@runtime_checkable
class Detector(Protocol):
    """A detector bound to one profile's settings."""

    name: str
    needs: Needs

    def start(self, exchange: Exchange) -> Awaitable[Any] | None:
        """Prompt-time work started with the request (run concurrently with the answer
        call); None when the detector has none."""

    async def judge(self, exchange: Exchange, answer: AnswerView, started: Any) -> Judgement:
        """The judgement of the answer; ``started`` is what :meth:`start`'s work returned
        (its exception is raised before this is called)."""


@runtime_checkable
class PrefixJudge(Protocol):
    """A detector that can judge a growing answer prefix (progressive streams)."""

    def prefix_threshold(self, profile_value: float | None) -> Threshold: ...

    async def judge_prefix(self, tokens: Sequence[dict], threshold: Threshold) -> Judgement: ...


@runtime_checkable
class PrefixStream(Protocol):
    """The prefix judgement of one growing answer, its state carried from check to check:
    each token is read once, so a check costs what the new tokens cost."""

    async def feed(self, tokens: Sequence[dict]) -> Judgement:
        """The judgement of the whole prefix so far, given only the tokens that arrived
        since the previous call."""


@runtime_checkable
class FinishingPrefixStream(Protocol):
    """A :class:`PrefixStream` whose carried state is also the whole answer's judgement:
    the answer-time judgement reads only the tokens the stream has not seen."""

    async def feed(self, tokens: Sequence[dict]) -> Judgement: ...

    async def finish(self, tokens: Sequence[dict]) -> Judgement:
        """The judgement of the whole answer (against the detector's answer threshold, as
        its ``judge`` would give), given the tokens since the last :meth:`feed`."""


@runtime_checkable
class StreamingPrefixJudge(Protocol):
    """A :class:`PrefixJudge` that judges a growing answer incrementally."""

    def open_prefix_stream(self, threshold: Threshold) -> PrefixStream: ...


class RejudgingPrefixStream:
    """A :class:`PrefixStream` over a judge without one: it keeps the prefix and judges it
    whole at every check (a check costs the whole prefix)."""

    def __init__(self, judge: PrefixJudge, threshold: Threshold):
        self.judge, self.threshold = judge, threshold
        self.tokens: list[dict] = []

    async def feed(self, tokens: Sequence[dict]) -> Judgement:
        self.tokens.extend(tokens)
        return await self.judge.judge_prefix(self.tokens, self.threshold)


def open_prefix_stream(judge: PrefixJudge, threshold: Threshold) -> PrefixStream:
    """The judge's own incremental stream when it has one, else a re-judging one."""
    if isinstance(judge, StreamingPrefixJudge):
        return judge.open_prefix_stream(threshold)
    return RejudgingPrefixStream(judge, threshold)


class DetectorPlugin(Protocol):
    """A detector's long-lived state (weights, caches), loaded once per gateway."""

    def bind(self, settings: DetectorSettings, profile: ProfileContext) -> Detector: ...


FeatureFn = Callable[[Mapping[str, Any]], Mapping[str, float | None]]


def risk_feature(name: str) -> FeatureFn:
    """The default combiner feature of a detector: its risk, under its own name."""
    def features(detail: Mapping[str, Any]) -> Mapping[str, float | None]:
        return {name: detail.get("risk")}
    return features


@dataclass(frozen=True)
class DetectorSpec:
    """A detector's registration."""

    name: str  # the key under a profile's `detectors:`
    settings: type[DetectorSettings]  # its knobs (a pydantic model with `enabled`)
    needs: Needs
    load: Callable[[], DetectorPlugin]  # builds its plugin; raises ImportError or
    # FileNotFoundError when this installation cannot offer it
    description: str = ""
    judges_prefixes: bool = False  # its bound detector is a PrefixJudge
    report_always: bool = False  # cheap: judged and reported (never counted) whenever the
    # answer has what it needs, even on profiles that do not enable it
    features: tuple[str, ...] = ()  # combiner features it produces (default: its name)
    feature_values: FeatureFn | None = None  # detail -> those features (default: risk)
    per_model: bool = False  # what it applies is fitted to one generator (weights, a
    # threshold): judging another model's answers needs that model's calibration bundle

    def combiner_features(self) -> tuple[str, ...]:
        return self.features or (self.name,)

    def values(self, detail: Mapping[str, Any]) -> Mapping[str, float | None]:
        return (self.feature_values or risk_feature(self.name))(detail)


def lazy(target: str) -> Callable[[], DetectorPlugin]:
    """``load`` from ``"module:callable"``, imported only when the plugin is loaded, so
    that reading a policy never imports a detector's implementation."""
    module, _, attr = target.partition(":")

    def load() -> DetectorPlugin:
        import importlib

        found: Any = importlib.import_module(module)
        for part in attr.split("."):  # "Class.factory" too
            found = getattr(found, part)
        return found()
    return load
