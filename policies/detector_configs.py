"""What the detectors get from a profile: their config dataclasses, built from its knobs.

    edfl = EdflGate(sampler, edfl_config(profile))          # when "edfl" is enabled
    semantic = SemanticGate(..., semantic_config(profile))  # when "semantic" is enabled
    halt_threshold(profile)    # None = the checkpoint's validation-tuned threshold
    sample_instruction(profile, prompt)   # code-creative's output-type constraint

The detectors' modules are imported when a config is first asked for, so loading and
checking a policy never imports them.
"""

from __future__ import annotations

import re
from typing import Any

from policies.schema import Profile


def _skeleton_kwargs(profile: Profile) -> dict[str, Any]:
    s = profile.skeletons
    kwargs: dict[str, Any] = {"levels": tuple(s.levels)}
    if s.skip_words is not None:  # None keeps the detectors' default task words
        kwargs["skip_words"] = tuple(w.lower() for w in s.skip_words)
    return kwargs


def edfl_config(profile: Profile, **extra: Any):
    """``detectors.edfl.EdflConfig`` for ``profile``; ``extra`` sets knobs policies lack."""
    from detectors.edfl.config import EdflConfig

    k = profile.detectors.edfl
    return EdflConfig(h_star=profile.h_star, isr_threshold=k.isr_threshold, margin=k.margin,
                      clip=k.clip, m=k.m, n=k.n, mode=profile.skeletons.masking,
                      **_skeleton_kwargs(profile), **extra)


def semantic_config(profile: Profile, **extra: Any):
    """``detectors.semantic.SemanticConfig`` for ``profile``."""
    from detectors.semantic.config import SemanticConfig

    k = profile.detectors.semantic
    return SemanticConfig(M=k.M, m=k.m, skeleton_samples=k.skeleton_samples,
                          max_tokens=k.max_tokens, temperature=k.temperature,
                          sample_seed=k.seed,
                          h_star=profile.h_star,
                          isr_threshold=k.isr_threshold, margin=k.margin,
                          backend=k.entailment, nli_model_path=k.nli_model_path,
                          delta_mode=k.delta_mode, skeleton_mode=profile.skeletons.masking,
                          **_skeleton_kwargs(profile), **extra)


def halt_threshold(profile: Profile) -> float | None:
    """HALT's risk threshold; None means the one stored with the checkpoint."""
    return profile.detectors.halt.threshold


CODE_INSTRUCTION = "Reply with exactly one fenced code block and no text outside it."
PARAGRAPH_INSTRUCTION = "Reply with exactly one paragraph of plain prose."
_CODE_REQUEST = re.compile(
    r"```|\b(?:code|function|script|program|implement|class|method|regex|sql|query|bug|"
    r"refactor|compile|python|javascript|typescript|java|rust|golang|bash|c\+\+)\b",
    re.IGNORECASE)


def sample_instruction(profile: Profile, prompt: str) -> str | None:
    """The system instruction for the gates' own samples, or None (no constraint).

    ``code_or_paragraph`` asks for one code block when the prompt is a code request and
    for one paragraph otherwise, so stylistic variety does not split meanings (toolkit
    overview §4, step 2). It shapes the samples the gates draw, not the client's answer.
    """
    if profile.output_constraint != "code_or_paragraph":
        return None
    return CODE_INSTRUCTION if _CODE_REQUEST.search(prompt) else PARAGRAPH_INSTRUCTION
