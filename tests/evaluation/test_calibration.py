"""policies/calibration.py: Learn-then-Test threshold choice and in-place policy edits."""

from __future__ import annotations

import numpy as np
import pytest

from policies import load_policy, load_policy_text
from policies.calibration import (
    CalibrationConfig,
    KnobEditError,
    guarantee_check,
    ltt_threshold,
    sample_safe_risk,
    set_profile_knob,
    split_indices,
)


def calibrated_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """s ~ U(0, 1) and P(hallucinated | s) = s, so the selective risk at t is t / 2."""
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    return s, rng.random(n) < s


def test_ltt_picks_a_safe_threshold_near_the_true_one():
    s, y = calibrated_scores(4000, seed=0)
    result = ltt_threshold(s, y, CalibrationConfig(target_risk=0.1, delta=0.1))
    # true answer: R(t) = t/2 <= 0.1 iff t <= 0.2; the bound costs a little
    assert 0.14 <= result.threshold <= 0.2
    assert result.upper_bound <= 0.1
    assert result.coverage == pytest.approx(np.mean(s < result.threshold))
    assert result.errors == int(y[s < result.threshold].sum())
    assert not result.tests[-1].safe  # the sequence stopped at its first failure


def test_guarantee_holds_over_repeated_calibration_samples():
    """With δ = 0.1 at most about 10% of calibration draws may choose an unsafe t."""
    unsafe = 0
    for seed in range(60):
        s, y = calibrated_scores(600, seed=seed)
        t = ltt_threshold(s, y, CalibrationConfig(target_risk=0.1, delta=0.1)).threshold
        unsafe += t is not None and t / 2 > 0.1
    assert unsafe <= 6


def test_guarantee_check_on_a_corpus_taken_as_the_population():
    s, y = calibrated_scores(1200, seed=3)
    config = CalibrationConfig(target_risk=0.2, delta=0.1)
    pop = guarantee_check(s, y, config, splits=200, population=True)
    assert 0.2 < pop.mean_coverage < 0.4  # true t* = 0.4, the bound costs some
    # P(R(t̂) > α) <= δ; over 200 draws the count's standard error is about 0.02
    assert pop.exceeded_fraction <= config.delta + 0.05
    held = guarantee_check(s, y, config, splits=200)
    assert 0.2 < held.mean_coverage < 0.4 and held.splits == 200


def test_guarantee_check_catches_a_bound_that_cannot_carry_the_promise():
    s, y = calibrated_scores(1200, seed=4)
    # δ = 0.9 is a bound loose enough that chosen thresholds overshoot α most of the time
    loose = guarantee_check(s, y, CalibrationConfig(target_risk=0.2, delta=0.9),
                            splits=200, population=True)
    assert loose.exceeded_fraction > 0.5


def test_the_sample_safe_risk_is_the_binomial_tail_solved_for_the_risk():
    from scipy import stats
    alpha, m, delta = 0.2, 300, 0.05
    r = sample_safe_risk(alpha, m, delta)
    k = int(alpha * m)
    assert r < alpha
    assert stats.binom.sf(k, m, r) == pytest.approx(delta, rel=1e-6)  # P(X > k) = δ
    assert stats.binom.sf(k, m, r + 0.01) > delta  # the largest such risk
    assert sample_safe_risk(alpha, 0, delta) == alpha and sample_safe_risk(1.0, 5, delta) == 1


def test_a_threshold_certified_for_the_held_out_half_keeps_its_measured_rate():
    """The promise as measured on the held-out half: exceeded in at most δ of resplits,
    where the population certification overshoots on the half about as often as not."""
    s, y = calibrated_scores(1200, seed=5)
    config = CalibrationConfig(target_risk=0.2, delta=0.1)
    plain = guarantee_check(s, y, config, splits=200)
    for_half = guarantee_check(s, y, CalibrationConfig(target_risk=0.2, delta=0.1,
                                                       sample_size=600), splits=200)
    assert plain.exceeded_fraction > config.delta  # the half's own noise
    assert for_half.exceeded_fraction <= config.delta
    assert 0.0 < for_half.mean_coverage < plain.mean_coverage  # what the promise costs


def test_refuses_when_no_threshold_meets_the_target():
    s = np.linspace(0, 1, 500)
    result = ltt_threshold(s, np.ones(500, bool), CalibrationConfig(target_risk=0.05))
    assert result.threshold is None and result.coverage == 0.0
    assert "the strictest testable threshold" in result.reason


def test_refuses_when_too_few_items_could_ever_pass():
    config = CalibrationConfig(target_risk=0.05, delta=0.1)
    assert config.min_answered == 45  # ⌈log 0.1 / log 0.95⌉
    result = ltt_threshold(np.linspace(0, 1, 40), np.zeros(40, bool), config)
    assert result.threshold is None and result.tests == ()


def test_fixed_sequence_stops_at_the_first_failure():
    # safe low scores, a bad block in the middle, then many clean high scores: a later
    # threshold would pass again, but fixed-sequence testing must stop before the block
    s = np.r_[np.full(100, 0.1), np.full(30, 0.5), np.full(1000, 0.8)]
    y = np.r_[np.zeros(100, bool), np.ones(30, bool), np.zeros(1000, bool)]
    config = CalibrationConfig(target_risk=0.1, delta=0.1, grid=(0.2, 0.6, 0.9),
                               min_coverage=0.0)
    result = ltt_threshold(s, y, config)
    assert result.threshold == 0.2 and [t.safe for t in result.tests] == [True, False]


def test_other_detectors_vetoes_shrink_the_answered_set():
    s = np.linspace(0, 0.5, 200)
    others = np.arange(200) % 2 == 0
    result = ltt_threshold(s, np.zeros(200, bool), CalibrationConfig(), others)
    assert result.answered == int(others.sum())


def test_split_is_seeded_and_disjoint():
    a, b = split_indices(10, 0.5, seed=3)
    assert sorted([*a, *b]) == list(range(10)) and len(a) == 5
    assert (split_indices(10, 0.5, seed=3)[0] == a).all()


POLICY = """\
# my policy
version: 1
routes:
  - name: default
    default: true
    profile: mine   # the only route
profiles:
  mine:
    extends: strict-factual
    detectors:
      halt:
        threshold: 0.5      # hand-picked
    combine:
      mode: any
  other:
    extends: strict-factual
"""


def test_set_existing_knob_keeps_comments():
    text = set_profile_knob(POLICY, "mine", "halt.threshold", 0.315, "calibrated")
    assert "threshold: 0.315      # hand-picked" in text
    assert text.replace("0.315", "0.5") == POLICY
    assert load_policy_text(text).profiles["mine"].detectors.halt.threshold == 0.315


def test_set_missing_knob_inserts_it_in_the_right_profile():
    text = set_profile_knob(POLICY, "other", "halt.threshold", 0.2, "calibrated")
    policy = load_policy_text(text)
    assert policy.profiles["other"].detectors.halt.threshold == 0.2
    assert policy.profiles["mine"].detectors.halt.threshold == 0.5
    text = set_profile_knob(POLICY, "mine", "combine.threshold", 0.4)
    assert load_policy_text(text).profiles["mine"].combine.threshold == 0.4


def test_a_builtin_profile_gets_a_customising_block():
    text = set_profile_knob(POLICY, "strict-factual", "halt.threshold", 0.25, "cal")
    assert "extends: strict-factual" in text.split("strict-factual:\n", 1)[1]
    policy = load_policy_text(text.replace("profile: mine", "profile: strict-factual"))
    assert policy.profiles["strict-factual"].detectors.halt.threshold == 0.25


def test_flow_style_is_refused_for_a_redump():
    flow = POLICY.replace("    detectors:\n      halt:\n        threshold: 0.5      "
                          "# hand-picked\n", "    detectors: {halt: {threshold: 0.5}}\n")
    with pytest.raises(KnobEditError):
        set_profile_knob(flow, "mine", "halt.threshold", 0.3)


def test_example_policy_can_be_edited(tmp_path):
    from policies.loader import EXAMPLES_DIR

    source = EXAMPLES_DIR / "evaluate.yaml"
    out = tmp_path / "out.yaml"
    out.write_text(set_profile_knob(source.read_text(), "evaluate", "halt.threshold", 0.4))
    assert load_policy(out).profiles["evaluate"].detectors.halt.threshold == 0.4
