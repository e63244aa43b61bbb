import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.edfl import budget
from detectors.semantic.prior import (
    categorical_kl,
    delta_bar_kl,
    skeleton_counts,
    smoothed_distributions,
    top_meaning_priors,
)


def test_skeleton_counts_put_unmatched_answers_in_other():
    counts = skeleton_counts([[0, 0, None], [1, None, None]], n_clusters=2)
    np.testing.assert_array_equal(counts, [[2, 0, 1], [0, 1, 2]])


def test_top_meaning_prior_is_laplace_over_top_versus_everything_else():
    counts = np.array([[3, 0, 0], [1, 0, 2], [0, 0, 0]], dtype=float)
    assert top_meaning_priors(counts, top=0) == pytest.approx([4 / 5, 2 / 5, 1 / 2])


@given(st.lists(st.lists(st.integers(0, 5), min_size=3, max_size=3), min_size=1, max_size=4),
       st.floats(0.05, 2.0))
def test_smoothed_distributions_are_distributions_with_full_support(rows, alpha):
    dists = smoothed_distributions(np.array(rows, dtype=float), alpha)
    np.testing.assert_allclose(dists.sum(axis=1), 1.0)
    assert (dists > 0).all()


def test_smoothing_must_be_positive():
    with pytest.raises(ValueError):
        smoothed_distributions(np.ones((1, 2)), 0.0)


def naive_kl(p, q):
    return sum(pi * np.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=5),
       st.lists(st.floats(0.01, 1.0), min_size=2, max_size=5))
def test_categorical_kl_matches_the_naive_sum_and_is_nonnegative(p, q):
    size = min(len(p), len(q))
    p, q = np.array(p[:size]), np.array(q[:size])
    if p.sum() == 0:
        p[0] = 1.0
    p, q = p / p.sum(), q / q.sum()
    assert categorical_kl(p, q) == pytest.approx(naive_kl(p, q), abs=1e-12)
    assert categorical_kl(p, q) >= -1e-12
    assert categorical_kl(p, p) == pytest.approx(0.0, abs=1e-12)


def test_delta_bar_kl_is_the_mean_clipped_kl_with_other_as_an_extra_class():
    posterior = np.array([0.8, 0.2])
    priors = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    expected = np.mean([naive_kl([0.8, 0.2, 0.0], row) for row in priors])
    assert delta_bar_kl(posterior, priors, clip=12.0) == pytest.approx(expected)
    assert delta_bar_kl(posterior, priors, clip=0.1) == pytest.approx(0.1)


def reference_renormalised_prior(assignments, top):
    """The public toolkit's projection: matched answers only, renormalised (the defect)."""
    matched = [c for c in assignments if c is not None]
    return matched.count(top) / len(matched) if matched else 1.0


def test_regression_disagreeing_skeletons_lower_the_prior_of_a_single_cluster():
    # One full-prompt meaning; every skeleton answer means something else (OTHER).
    disagree = [[None, None, None]] * 4
    agree = [[0, 0, 0]] * 4
    assert reference_renormalised_prior(disagree[0], 0) == 1.0  # the defect: no signal
    low = top_meaning_priors(skeleton_counts(disagree, 1), top=0)
    high = top_meaning_priors(skeleton_counts(agree, 1), top=0)
    assert max(low) < 0.25 < 0.75 < min(high)
    b2t_low = budget.bits_to_trust(budget.q_lo(low, 1e-3), 0.05)
    b2t_high = budget.bits_to_trust(budget.q_lo(high, 1e-3), 0.05)
    assert b2t_low > b2t_high + 1.0  # far more information needed when skeletons disagree
    other = smoothed_distributions(skeleton_counts(disagree, 1), 0.5)[:, -1]
    assert (other > 0.8).all()  # OTHER keeps its mass
