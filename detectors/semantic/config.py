"""Knobs of the semantic-entropy gate, one frozen dataclass with a comment per default."""

from __future__ import annotations

from dataclasses import dataclass

from detectors.edfl.skeletons import DEFAULT_LEVELS, DEFAULT_SKIP_WORDS, SkeletonConfig
from detectors.semantic.entailment import BACKENDS

DELTA_MODES = ("llr", "kl")
MASSES = ("count", "prob")


@dataclass(frozen=True)
class SemanticConfig:
    # --- sampling (through the Sampler; every call concurrent) ---
    M: int = 10  # full-prompt samples; Farquhar et al. 2024 use 10
    temperature: float = 1.0  # sampling temperature of full-prompt and skeleton answers
    top_p: float = 0.9  # nucleus sampling, as in Farquhar et al.
    sample_seed: int | None = 0  # first sampling seed (one per answer); None: unseeded
    max_tokens: int = 64  # per sampled answer; short-answer QA needs far fewer
    top_logprobs: int = 1  # >0 asks for token logprobs (the probability mass needs them)
    m: int = 4  # skeleton prompts for the prior (EDFL's builder, detectors/edfl/skeletons.py)
    skeleton_samples: int = 3  # answers per skeleton; m·skeleton_samples answers in all
    levels: tuple[float, ...] = DEFAULT_LEVELS  # masking probability of skeleton k, cycled
    skip_words: tuple[str, ...] = DEFAULT_SKIP_WORDS  # task words the masker never touches
    skeleton_mode: str = "auto"  # auto | evidence | closed_book (see skeletons.py)
    seed: int = 0  # skeleton masking seed

    # --- meaning tests ---
    backend: str = "embedding"  # lexical | embedding | nli | llm (entailment.py)
    short_circuit: bool = True  # lexical rules decide equal/numerically different pairs first
    embedding_threshold: float = 0.76  # cosine; bench/semantic_calibrate.py, validation split
    embedding_condition_on_question: bool = False  # embed "question answer" pairs instead
    lexical_f1_threshold: float = 0.074  # token F1; bench/semantic_calibrate.py, validation
    nli_model_path: str | None = None  # local folder of an NLI model; required for "nli"

    # --- masses, prior and budget (nats) ---
    mass: str = "count"  # count | prob: the mass behind P*, the gate and ``risk``
    delta_mode: str = "llr"  # llr: 1-D log ratio of the top meaning; kl: multi-class KL
    prior_alpha: float = 0.5  # additive smoothing of skeleton distributions (kl mode, report)
    h_star: float = 0.05  # target hallucination rate; the latch is P* >= 1 - h*
    isr_threshold: float = 1.0  # ISR = Δ̄ / B2T must reach this (toolkit default)
    margin: float = 0.0  # extra nats: Δ̄ >= B2T + margin
    clip: float = 12.0  # B: each skeleton's log ratio / KL is clipped to [-B, B] (EDFL's)
    q_floor: float = 1e-3  # floor on q_lo and inside the logs (EDFL's)

    def __post_init__(self) -> None:
        if self.M < 1 or self.m < 1 or self.skeleton_samples < 1:
            raise ValueError("M, m and skeleton_samples must be >= 1")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        if self.delta_mode not in DELTA_MODES:
            raise ValueError(f"delta_mode must be one of {DELTA_MODES}")
        if self.mass not in MASSES:
            raise ValueError(f"mass must be one of {MASSES}")
        if not 0.0 < self.h_star < 1.0:
            raise ValueError("h_star must lie in (0, 1)")
        if self.backend == "nli" and not self.nli_model_path:
            raise ValueError("the nli backend needs nli_model_path (a local model folder)")
        self.skeleton_config()  # validates levels and mode

    def skeleton_config(self) -> SkeletonConfig:
        return SkeletonConfig(
            m=self.m, levels=self.levels, mode=self.skeleton_mode,
            skip_words=self.skip_words, seed=self.seed,
        )  # fmt: skip
