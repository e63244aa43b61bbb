"""The report's curves (evaluation/tune_plots.py) against naive loops, and their PNGs."""

from __future__ import annotations

import numpy as np

from evaluation.tune_plots import (
    HeldOut,
    reliability,
    reliability_png,
    risk_coverage,
    risk_coverage_png,
    source_auroc_png,
    source_intervals,
)


def test_risk_coverage_is_the_error_rate_of_the_least_risky_k():
    rng = np.random.default_rng(0)
    risks = rng.random(50)
    risks[3] = np.nan  # an item without a score is left out
    labels = rng.random(50) < 0.6
    coverage, rate = risk_coverage(risks, labels)
    keep = ~np.isnan(risks)
    order = np.argsort(risks[keep])
    for k in (1, 10, 49):
        assert coverage[k - 1] == k / 49
        assert rate[k - 1] == labels[keep][order[:k]].mean()


def test_reliability_bins_by_predicted_risk():
    probs = np.array([0.05, 0.07, 0.55, 0.58, 0.95, np.nan])
    labels = np.array([0, 1, 1, 1, 1, 0], dtype=bool)
    mean_p, rate, count = reliability(probs, labels)
    assert np.allclose(mean_p, [0.06, 0.565, 0.95])
    assert np.allclose(rate, [0.5, 1.0, 1.0])
    assert count.tolist() == [2, 2, 1]


def test_the_figures_render(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.random(200) < 0.8
    view = HeldOut({"halt": rng.random(200), "mean_logprob": rng.random(200) + labels * 0.3,
                    "learned_combiner": rng.random(200)}, labels,
                   np.array(["a", "b"] * 100))
    risk_coverage_png(view, [0.8, 0.9], tmp_path / "rc.png")
    reliability_png(view, tmp_path / "rel.png")
    intervals = source_intervals(view)
    lo, point, hi = (intervals["a"]["mean_logprob"][i] for i in (1, 0, 2))
    assert lo <= point <= hi
    source_auroc_png(intervals, tmp_path / "src.png")
    for name in ("rc.png", "rel.png", "src.png"):
        assert (tmp_path / name).stat().st_size > 5000


def test_source_intervals_are_the_shared_bootstrap_interval():
    # one interval rule for every report: a source with an interval gets exactly
    # bootstrap_interval's; one without (2 items: about half the resamples hold one
    # class) is drawn as its point alone
    from detectors.metrics import auroc, bootstrap_interval

    rng = np.random.default_rng(3)
    labels = np.r_[rng.random(60) < 0.5, [True, False]]
    risks = np.r_[rng.random(60) + labels[:60] * 0.4, [0.9, 0.1]]
    view = HeldOut({"mean_logprob": risks}, labels, np.array(["big"] * 60 + ["two"] * 2))
    intervals = source_intervals(view)
    for source, keep in (("big", slice(0, 60)), ("two", slice(60, 62))):
        point = auroc(risks[keep], labels[keep])
        expected = bootstrap_interval(auroc, risks[keep], labels[keep], resamples=1000)
        assert intervals[source]["mean_logprob"] == (point, *(expected or (point, point)))
    assert intervals["big"]["mean_logprob"][1] < intervals["big"]["mean_logprob"][2]
