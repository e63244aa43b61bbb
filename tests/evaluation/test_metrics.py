"""detectors/metrics.py against hand-computed values and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from detectors.metrics import (
    accuracy_rejection,
    aurac,
    auroc,
    best_macro_f1_threshold,
    clopper_pearson_upper,
    macro_f1,
    prr,
    roc_curve,
    wilson_upper,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def test_auroc_by_hand_with_a_tie():
    # positives 0.9, 0.5; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.5=0.5, 0.5>0.1)
    assert auroc([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_the_pairwise_definition_and_roc_curve_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + 0.7 * y, 1)  # rounded: many ties
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    assert auroc(s, y) == pytest.approx(np.mean((pos > neg) + 0.5 * (pos == neg)))
    fpr, tpr = roc_curve(s, y)
    ref_fpr, ref_tpr, _ = sklearn_metrics.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)


def test_auroc_is_nan_with_one_class():
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))


def test_accuracy_rejection_and_aurac_by_hand():
    # riskiest first: 0.9 (wrong), 0.6 (right), 0.3 (wrong), 0.1 (right)
    s, y = [0.1, 0.9, 0.3, 0.6], [0, 1, 1, 0]
    rate, acc = accuracy_rejection(s, y)
    np.testing.assert_allclose(rate, [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(acc, [2 / 4, 2 / 3, 1 / 2, 1 / 1])
    assert aurac(s, y) == pytest.approx((0.5 + 2 / 3 + 0.5 + 1) / 4)


def test_tied_scores_count_errors_in_expectation():
    # one tie group holding a right and a wrong answer: rejecting one of them keeps 0.5
    _, acc = accuracy_rejection([0.5, 0.5], [1, 0])
    np.testing.assert_allclose(acc, [0.5, 0.5])


def test_prr_perfect_reversed_and_random():
    y = np.array([1, 0] * 50)
    assert prr(y.astype(float), y) == pytest.approx(1.0)
    assert prr(-y.astype(float), y) < -0.9
    rng = np.random.default_rng(0)
    randoms = [prr(rng.random(100), y) for _ in range(300)]
    assert abs(np.mean(randoms)) < 0.03


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 2, 100), rng.integers(0, 2, 100)
    assert macro_f1(p, y) == pytest.approx(sklearn_metrics.f1_score(y, p, average="macro"))
    assert macro_f1([1, 1, 1], [1, 1, 1]) == pytest.approx(0.5)  # class 0 never occurs


def test_best_macro_f1_threshold_separates_clean_data():
    assert best_macro_f1_threshold([0.1, 0.2, 0.7, 0.8], [0, 0, 1, 1]) == pytest.approx(0.45)


# Hand values: (p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n), z = 1.96.
@pytest.mark.parametrize("errors, n, expected", [
    (0, 10, 0.2775), (5, 10, 0.7634), (1, 20, 0.2361), (0, 0, 1.0)])
def test_wilson_upper_known_values(errors, n, expected):
    assert wilson_upper(errors, n, 0.95) == pytest.approx(expected, abs=5e-4)


def test_clopper_pearson_upper():
    # zero errors: P(Bin(n, p) = 0) = (1 − p)^n = δ  ->  p = 1 − δ^(1/n)
    assert clopper_pearson_upper(0, 50, 0.1) == pytest.approx(1 - 0.1 ** (1 / 50))
    bound = clopper_pearson_upper(3, 40, 0.05)
    assert stats.binom.cdf(3, 40, bound) == pytest.approx(0.05, abs=1e-9)
    assert clopper_pearson_upper(5, 5, 0.1) == 1.0
    assert clopper_pearson_upper(0, 0, 0.1) == 1.0


def test_mean_source_auroc_ignores_what_only_tells_sources_apart():
    from detectors.metrics import mean_source_auroc, paired_source_bootstrap

    # source "a" is mostly hallucinated and scored high, "b" mostly right and scored low;
    # within each source the score is random
    rng = np.random.default_rng(0)
    sources = np.array(["a"] * 200 + ["b"] * 200)
    labels = np.concatenate([rng.random(200) < 0.9, rng.random(200) < 0.2]).astype(int)
    source_only = np.where(sources == "a", 1.0, 0.0) + rng.random(400) * 0.01
    assert auroc(source_only, labels) > 0.8
    assert abs(mean_source_auroc(source_only, labels, sources) - 0.5) < 0.1
    samples = paired_source_bootstrap({"x": source_only, "y": labels + 0.0}, labels, sources,
                                      resamples=50)
    assert len(samples["x"]) == len(samples["y"]) == 50
    assert (samples["y"] == 1.0).all()  # a perfect score is perfect in every resample


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_bootstrap_aurocs_equal_the_resampling_loop(seed):
    from detectors.metrics import bootstrap_aurocs, bootstrap_interval

    rng = np.random.default_rng(seed)
    scores = rng.random(120).round(2)  # ties on purpose
    labels = (rng.random(120) < 0.15).astype(int)
    draws = np.random.default_rng(seed + 10)
    loop = []
    for _ in range(300):
        idx = draws.integers(0, 120, 120)
        loop.append(auroc(scores[idx], labels[idx]) if 0 < labels[idx].sum() < 120
                    else np.nan)
    assert np.allclose(bootstrap_aurocs(scores, labels, resamples=300, seed=seed + 10), loop,
                       equal_nan=True)
    kept = np.array(loop)[~np.isnan(loop)]
    assert bootstrap_interval(auroc, scores, labels, resamples=300, seed=seed + 10) == \
        pytest.approx(tuple(np.quantile(kept, [0.025, 0.975])))


def test_paired_source_bootstrap_equals_the_resampling_loop():
    from detectors.metrics import paired_source_bootstrap

    rng = np.random.default_rng(3)
    sources = np.array(["a"] * 40 + ["b"] * 25 + ["c"] * 30)
    labels = (rng.random(95) < 0.3).astype(int)
    sets = {"x": rng.random(95).round(1), "y": rng.random(95)}
    draws = np.random.default_rng(7)
    groups = [np.flatnonzero(sources == s) for s in ("a", "b", "c")
              if 0 < labels[sources == s].sum() < (sources == s).sum()]
    loop: dict[str, list[float]] = {"x": [], "y": []}
    for _ in range(200):
        picks = [g[draws.integers(0, len(g), len(g))] for g in groups]
        if any(labels[p].min() == labels[p].max() for p in picks):
            continue
        for name, s in sets.items():
            loop[name].append(float(np.mean([auroc(s[p], labels[p]) for p in picks])))
    got = paired_source_bootstrap(sets, labels, sources, resamples=200, seed=7)
    for name in sets:
        assert np.allclose(got[name], loop[name])


def test_paired_source_bootstrap_without_a_two_class_source_is_undefined():
    from detectors.metrics import paired_source_bootstrap

    samples = paired_source_bootstrap({"x": np.array([0.1, 0.9])}, np.array([0, 1]),
                                      np.array(["a", "b"]), resamples=20)
    assert len(samples["x"]) == 20 and np.isnan(samples["x"]).all()
