"""Profiles build the detectors' own config dataclasses (catches drift between the two)."""

import pytest

from policies import load_policy_text
from policies.detector_configs import (
    CODE_INSTRUCTION,
    PARAGRAPH_INSTRUCTION,
    edfl_config,
    halt_threshold,
    sample_instruction,
    semantic_config,
)

POLICY = load_policy_text("""
routes:
  - {name: c, match: {header: c}, profile: code-creative}
  - {name: s, match: {header: s}, profile: shadow}
  - {name: d, default: true, profile: mine}
profiles:
  mine:
    extends: strict-factual
    h_star: 0.1
    skeletons: {masking: evidence, levels: [0.5], skip_words: [Regex]}
    detectors:
      halt: {threshold: 0.42}
      edfl: {m: 3, n: 5, margin: 0.3, isr_threshold: 1.5, clip: 8}
      semantic: {enabled: true, M: 6, m: 2, entailment: lexical, delta_mode: kl}
""")


@pytest.mark.parametrize("name", sorted(POLICY.profiles))
def test_every_profile_builds_both_configs(name):
    profile = POLICY.profiles[name]
    edfl, semantic = edfl_config(profile), semantic_config(profile)
    assert edfl.h_star == semantic.h_star == profile.h_star
    assert edfl.mode == semantic.skeleton_mode == profile.skeletons.masking


def test_knobs_reach_the_dataclasses():
    mine = POLICY.profiles["mine"]
    edfl, semantic = edfl_config(mine), semantic_config(mine)
    assert (edfl.m, edfl.n, edfl.margin, edfl.isr_threshold, edfl.clip) == (3, 5, 0.3, 1.5, 8)
    assert edfl.levels == (0.5,) and edfl.skip_words == ("regex",)
    assert (semantic.M, semantic.m, semantic.backend, semantic.delta_mode) == (
        6, 2, "lexical", "kl")
    assert halt_threshold(mine) == 0.42
    assert halt_threshold(POLICY.profiles["shadow"]) is None  # the checkpoint's own


def test_default_skip_words_are_the_detectors_own():
    from detectors.edfl.skeletons import DEFAULT_SKIP_WORDS

    assert edfl_config(POLICY.profiles["shadow"]).skip_words == DEFAULT_SKIP_WORDS


def test_output_constraint_instruction():
    code, strict = POLICY.profiles["code-creative"], POLICY.profiles["shadow"]
    assert sample_instruction(code, "write a python function to add") == CODE_INSTRUCTION
    assert sample_instruction(code, "a haiku about rain") == PARAGRAPH_INSTRUCTION
    assert sample_instruction(strict, "write a python function") is None
