"""HALT's registration: its settings and what it needs (no torch import here)."""

from __future__ import annotations

from detectors.protocol import DetectorSpec, Needs, ThresholdedSettings, lazy


class HaltSettings(ThresholdedSettings):
    """HALT on the answer's token logprobs (cheap: no extra upstream call)."""

    enabled: bool = True  # on by default: it only reads logprobs the answer already has
    # threshold: risk >= threshold -> abstain; None = the threshold tuned on validation and
    # stored with the checkpoint


SPEC = DetectorSpec(
    name="halt",
    settings=HaltSettings,
    needs=Needs(answer_logprobs=True),
    load=lazy("detectors.halt.detector:HaltPlugin.load_default"),
    description="HALT: a BiGRU over the answer's top-20 token logprobs",
    judges_prefixes=True,
    report_always=True,
    per_model=True,
)


class CausalHaltSettings(ThresholdedSettings):
    """Causal HALT: a forward-only GRU over the same features, its state carried across a
    stream's checks (each token read once) and reused as the whole answer's judgement."""

    enabled: bool = False
    # threshold: risk >= threshold -> abstain; None = the whole-answer threshold tuned on
    # validation and stored with the causal checkpoint


CAUSAL_SPEC = DetectorSpec(
    name="halt_causal",
    settings=CausalHaltSettings,
    needs=Needs(answer_logprobs=True),
    load=lazy("detectors.halt.causal_detector:CausalHaltPlugin.load_default"),
    description="causal HALT: a forward-only GRU over the answer's top-20 token logprobs "
                "(constant work per streamed token)",
    judges_prefixes=True,
    per_model=True,
)
