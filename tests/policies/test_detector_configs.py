"""Profiles build the detectors' own config dataclasses (catches drift between the two)."""

import pytest

from detectors.edfl.detector import edfl_config, isr_threshold
from detectors.edfl.spec import EdflSettings
from detectors.semantic.detector import (
    CODE_INSTRUCTION,
    PARAGRAPH_INSTRUCTION,
    sample_instruction,
    semantic_config,
)
from policies import load_policy_text

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


def _configs(profile):
    context = profile.context()
    return (edfl_config(profile.detectors.edfl, context),
            semantic_config(profile.detectors.semantic, context))


@pytest.mark.parametrize("name", sorted(POLICY.profiles))
def test_every_profile_builds_both_configs(name):
    profile = POLICY.profiles[name]
    edfl, semantic = _configs(profile)
    assert edfl.h_star == semantic.h_star == profile.h_star
    assert edfl.mode == semantic.skeleton_mode == profile.skeletons.masking


def test_knobs_reach_the_dataclasses():
    mine = POLICY.profiles["mine"]
    edfl, semantic = _configs(mine)
    assert (edfl.m, edfl.n, edfl.margin, edfl.isr_threshold, edfl.clip) == (3, 5, 0.3, 1.5, 8)
    assert edfl.levels == (0.5,) and edfl.skip_words == ("regex",)
    assert (semantic.M, semantic.m, semantic.backend, semantic.delta_mode) == (
        6, 2, "lexical", "kl")
    assert mine.detectors.halt.threshold == 0.42
    assert POLICY.profiles["shadow"].detectors.halt.threshold is None  # the checkpoint's


def test_threshold_sources():
    mine = POLICY.profiles["mine"]
    assert isr_threshold(mine.detectors.edfl).source == "profile"
    assert isr_threshold(mine.detectors.edfl).value == 1.5
    assert isr_threshold(EdflSettings(enabled=True)).source == "default"
    assert isr_threshold(EdflSettings(enabled=True)).value == 1.0


def test_default_skip_words_are_the_detectors_own():
    from detectors.edfl.skeletons import DEFAULT_SKIP_WORDS

    assert _configs(POLICY.profiles["shadow"])[0].skip_words == DEFAULT_SKIP_WORDS


def test_output_constraint_instruction():
    code, strict = POLICY.profiles["code-creative"], POLICY.profiles["shadow"]
    assert sample_instruction(code.output_constraint,
                              "write a python function to add") == CODE_INSTRUCTION
    assert sample_instruction(code.output_constraint, "a haiku about rain") == \
        PARAGRAPH_INSTRUCTION
    assert sample_instruction(strict.output_constraint, "write a python function") is None
