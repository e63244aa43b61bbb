import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.edfl import budget

probs = st.floats(min_value=1e-6, max_value=1 - 1e-6, allow_nan=False)


def naive_kl(p: float, q: float) -> float:
    terms = []
    for a, b in ((p, q), (1 - p, 1 - q)):
        terms.append(0.0 if a == 0 else a * math.log(a / b))
    return sum(terms)


# --------------------------------------------------------------------------- test vectors


@pytest.mark.parametrize(("q_lo", "expected"), [(0.02, 3.519), (0.10, 1.994)])
def test_b2t_test_vectors(q_lo, expected):
    assert budget.bits_to_trust(q_lo, h_star=0.05) == pytest.approx(expected, abs=5e-4)


def test_p_max_test_vector():
    assert budget.p_max(2.0, 0.1) == pytest.approx(0.951, abs=5e-4)


# --------------------------------------------------------------------------- Bernoulli KL


@given(probs, probs)
def test_bernoulli_kl_matches_the_formula_and_is_non_negative(p, q):
    assert budget.bernoulli_kl(p, q) == pytest.approx(naive_kl(p, q), rel=1e-9, abs=1e-12)
    assert budget.bernoulli_kl(p, q) >= 0.0


def test_bernoulli_kl_edges():
    assert budget.bernoulli_kl(0.3, 0.3) == 0.0
    assert budget.bernoulli_kl(1.0, 0.5) == pytest.approx(math.log(2))
    assert budget.bernoulli_kl(0.0, 0.5) == pytest.approx(math.log(2))
    assert math.isfinite(budget.bernoulli_kl(1.0, 0.0))
    with pytest.raises(ValueError):
        budget.bernoulli_kl(1.2, 0.5)


# --------------------------------------------------------------------------- priors, Δ̄


def test_laplace_never_reaches_zero_or_one():
    assert budget.laplace_estimate(0, 7) == pytest.approx(1 / 9)
    assert budget.laplace_estimate(7, 7) == pytest.approx(8 / 9)
    assert budget.laplace_estimate(0, 0) == 0.5
    with pytest.raises(ValueError):
        budget.laplace_estimate(3, 2)


def test_q_avg_and_q_lo_with_floor():
    assert budget.q_avg([0.2, 0.4, 0.9]) == pytest.approx(0.5)
    assert budget.q_lo([0.2, 0.4, 0.9], floor=1e-3) == 0.2
    assert budget.q_lo([0.0, 0.4], floor=1e-3) == 1e-3
    with pytest.raises(ValueError):
        budget.q_avg([])


def test_delta_bar_is_the_mean_clipped_log_ratio():
    priors = [0.5, 0.25, 0.125]
    expected = sum(math.log(0.5 / s) for s in priors) / 3
    assert budget.delta_bar(0.5, priors, clip=12, floor=1e-6) == pytest.approx(expected)
    # the clip binds when asked to
    assert budget.delta_bar(0.9, [0.001], clip=1.0, floor=1e-6) == pytest.approx(1.0)
    assert budget.delta_bar(0.001, [0.9], clip=1.0, floor=1e-6) == pytest.approx(-1.0)


def test_delta_bar_is_not_dominated_by_the_clip_through_zero_counts():
    # Reference defect: a skeleton with 0 of 7 "answer" votes gave S_k = 0 and log(P/0)
    # was clipped to B = 12, so one zero count set Δ̄. Laplace + the floor keep it honest.
    p = budget.laplace_estimate(7, 7)
    priors = [budget.laplace_estimate(0, 7)] + [budget.laplace_estimate(4, 7)] * 5
    dbar = budget.delta_bar(p, priors, clip=12.0, floor=1e-3)
    assert dbar < 1.0
    assert dbar == pytest.approx((math.log(8) + 5 * math.log(8 / 5)) / 6)
    # even a raw zero prior is floored far below the clip
    assert budget.delta_bar(0.9, [0.0], clip=12.0, floor=1e-3) < math.log(1e3) + 1e-9


# --------------------------------------------------------------------------- B2T, ISR, RoH


def test_b2t_is_zero_when_the_prior_already_meets_the_target():
    assert budget.bits_to_trust(0.95, 0.05) == 0.0
    assert budget.bits_to_trust(0.99, 0.05) == 0.0
    assert budget.bits_to_trust(0.94, 0.05) > 0.0


@given(st.floats(min_value=1e-4, max_value=0.94), st.floats(min_value=1e-4, max_value=0.94))
def test_b2t_decreases_as_the_prior_rises(a, b):
    lo, hi = min(a, b), max(a, b)
    assert budget.bits_to_trust(lo, 0.05) >= budget.bits_to_trust(hi, 0.05) - 1e-12


def test_isr():
    assert budget.information_sufficiency_ratio(2.0, 1.0) == 2.0
    assert budget.information_sufficiency_ratio(-1.0, 2.0) == -0.5
    assert budget.information_sufficiency_ratio(0.1, 0.0) == math.inf


@given(st.floats(min_value=1e-3, max_value=5.0), st.floats(min_value=0.01, max_value=0.9))
def test_p_max_inverts_the_bernoulli_kl(dbar, q):
    p = budget.p_max(dbar, q)
    assert q <= p <= 1.0
    if p < 1.0:
        assert budget.bernoulli_kl(p, q) == pytest.approx(dbar, abs=1e-6)
    else:
        assert budget.bernoulli_kl(1.0, q) <= dbar


def test_p_max_without_budget_is_the_prior():
    assert budget.p_max(0.0, 0.3) == pytest.approx(0.3)
    assert budget.p_max(-1.0, 0.3) == pytest.approx(0.3)
    assert budget.p_max(10.0, 0.3) == 1.0


def test_roh_bound_is_in_unit_interval_and_falls_with_budget():
    bounds = [budget.roh_upper_bound(d, 0.2) for d in (-1.0, 0.0, 0.5, 1.0, 2.0, 5.0)]
    assert all(0.0 <= b <= 1.0 for b in bounds)
    assert bounds == sorted(bounds, reverse=True)
    assert budget.roh_upper_bound(2.0, 0.1) == pytest.approx(1 - 0.951, abs=5e-4)


# --------------------------------------------------------------------------- the rule


def test_a_full_prompt_that_refuses_never_passes():
    # Reference defect: the gate ignored which label the full prompt chose.
    assert not budget.should_answer(0.3, 10.0, 0.5, 20.0, isr_threshold=1.0, margin=0.0)
    assert not budget.should_answer(0.5, 10.0, 0.0, math.inf, isr_threshold=1.0, margin=0.0)


def test_prior_sufficient_answers_even_with_a_negative_budget():
    # Reference defect: B2T stayed positive for q_lo ≥ 1 − h*, so confident models abstained.
    assert budget.should_answer(0.97, -0.02, 0.0, math.inf, isr_threshold=1.0, margin=0.5)


def test_rule_needs_isr_and_margin():
    kw = {"isr_threshold": 1.0, "margin": 0.0}
    assert budget.should_answer(0.9, 2.0, 1.5, 2.0 / 1.5, **kw)
    assert not budget.should_answer(0.9, 1.0, 1.5, 1.0 / 1.5, **kw)
    assert not budget.should_answer(0.9, 2.0, 1.5, 2.0 / 1.5, isr_threshold=1.0, margin=1.0)
