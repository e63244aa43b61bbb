"""Registrations of the four logprob scores (one settings model, four detectors)."""

from __future__ import annotations

from detectors.protocol import DetectorSpec, Needs, ThresholdedSettings, lazy


class LogprobStatSettings(ThresholdedSettings):
    """A one-number score of the answer's token logprobs (free: no model, no extra call)."""

    enabled: bool = False
    # threshold: risk >= threshold -> abstain; None = the value calibrated for the model on
    # a validation split (detectors/logprob_stats/calibration.json), else 0.5


def _spec(name: str, description: str) -> DetectorSpec:
    return DetectorSpec(name=name, settings=LogprobStatSettings,
                        needs=Needs(answer_logprobs=True),
                        load=lazy(f"detectors.logprob_stats.detector:plugin_{name}"),
                        description=description, judges_prefixes=True, per_model=True)


SPECS = (
    _spec("mean_logprob", "−mean token logprob, squashed s/(1+s)"),
    _spec("min_logprob", "−min token logprob, squashed s/(1+s)"),
    _spec("topk_entropy", "mean normalised entropy of each token's top-k alternatives"),
    _spec("seq_prob", "1 − length-normalised sequence probability (geometric mean)"),
)
