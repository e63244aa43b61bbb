"""Knobs of the EDFL skeleton gate, one frozen dataclass with a comment per default."""

from __future__ import annotations

from dataclasses import dataclass

from detectors.edfl.skeletons import DEFAULT_LEVELS, DEFAULT_SKIP_WORDS, SkeletonConfig

PROMPT_STYLES = ("chat", "fewshot", "completion")


@dataclass(frozen=True)
class EdflConfig:
    # --- the decision rule (budget.py) ---
    h_star: float = 0.05  # target hallucination rate; strict-factual profile (1 − h* = 0.95)
    isr_threshold: float = 1.0  # ISR = Δ̄/B2T must reach this (toolkit default)
    margin: float = 0.0  # extra nats required: Δ̄ ≥ B2T + margin
    clip: float = 12.0  # B in clip(log P − log S_k, −B, B); the toolkit's value. With the
    # floor below |log P − log S_k| ≤ log(1/q_floor) = 6.9 already, so B only binds if a
    # caller lowers the floor; it stays as a guard, never as a zero-count artefact.
    q_floor: float = 1e-3  # floor on q_lo and on P, S_k inside the logs: label estimates
    # under 0.1% come from top-k truncation and unmatched label variants, not from the model

    # --- skeletons (skeletons.py) ---
    m: int = 6  # skeletons per decision; the toolkit's default
    levels: tuple[float, ...] = DEFAULT_LEVELS  # masking probability of skeleton k, cycled
    skip_words: tuple[str, ...] = DEFAULT_SKIP_WORDS  # task words never masked
    mode: str = "auto"  # auto | evidence | closed_book
    seed: int = 0  # skeleton seed; same seed + prompt -> same skeletons

    # --- decision probabilities (decision.py) ---
    prompt_style: str = "fewshot"  # chat | fewshot | completion. fewshot: label mass 0.81
    # vs 0.03 (chat) on the embedded model, validation slice (bench/edfl_embedded.py probe)
    top_logprobs: int = 20  # alternatives per token asked for; OpenAI's maximum
    decision_max_tokens: int = 2  # the label is the first (or, after a space/quote, second) token
    min_label_mass: float = 0.2  # below this share of probability on the two labels the
    # logprob estimate is not trusted and the gate samples n decisions instead
    n: int = 7  # sampled decisions per prompt in the fallback (toolkit default)
    sample_temperature: float = 1.0  # temperature of the sampled decisions
    sample_max_tokens: int = 4  # enough for "I cannot answer" / "refuse" / "answer."

    # --- the gate object ---
    cache_size: int = 512  # decision estimates kept per gate, LRU by (model, prompt text)

    def __post_init__(self) -> None:
        if not 0.0 < self.h_star < 1.0:
            raise ValueError("h_star must lie in (0, 1)")
        if not 0.0 < self.q_floor < 0.5:
            raise ValueError("q_floor must lie in (0, 0.5)")
        if self.n < 1 or self.m < 1:
            raise ValueError("m and n must be >= 1")
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}")
        self.skeleton_config()  # validates levels and mode

    def skeleton_config(self) -> SkeletonConfig:
        return SkeletonConfig(
            m=self.m, levels=self.levels, mode=self.mode, skip_words=self.skip_words,
            seed=self.seed,
        )  # fmt: skip
