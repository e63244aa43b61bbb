"""The cheapest detector set per target risk (calibration/selection.py), and its place in a
bundle: recorded in the manifest, old manifests without it still load."""

from __future__ import annotations

import json

import pytest

from calibration.build import recorded_cost, selections
from calibration.bundle import BundleError, load_bundle
from calibration.selection import Candidate, SetCost, cheapest_set, set_cost
from tests.calibration.bundles import SHIPPED, write_bundle


def _c(name, calls, tokens, threshold, coverage, how="single"):
    cost = None if calls is None else SetCost(calls, tokens)
    return Candidate((name,), how, cost, threshold, coverage, 0.5 if threshold else None)


def test_the_cheapest_certified_set_wins_then_the_highest_coverage():
    chosen = cheapest_set([
        _c("semantic", 3.0, 140.0, 0.8, 0.9),  # covers most, but pays
        _c("mean_logprob", 0.0, 0.0, 0.4, 0.30),
        _c("halt", 0.0, 0.0, 0.6, 0.35),  # free and covers more: wins
        _c("topk_entropy", 0.0, 0.0, None, 0.0),  # not certified
    ])
    assert chosen.detectors == ("halt",)


def test_fewer_tokens_break_a_tie_in_calls_and_unknown_cost_ranks_last():
    assert cheapest_set([_c("a", 3.0, 140.0, 0.5, 0.9),
                         _c("b", 3.0, 5.0, 0.5, 0.1)]).detectors == ("b",)
    assert cheapest_set([_c("unrecorded", None, None, 0.5, 0.9),
                         _c("edfl", 4.0, 6.0, 0.5, 0.1)]).detectors == ("edfl",)
    assert cheapest_set([_c("unrecorded", None, None, 0.5, 0.9)]).detectors == ("unrecorded",)
    assert cheapest_set([_c("x", 0.0, 0.0, None, 0.0)]) is None


def test_a_set_costs_the_sum_of_its_detectors_or_none_if_one_is_unrecorded():
    assert set_cost([(4.0, 6.0), (3.0, 168.0)]) == SetCost(7.0, 174.0)
    assert set_cost([(4.0, 6.0), None]) is None
    assert set_cost([(4.0, None)]) is None
    assert set_cost([]) == SetCost(0.0, 0.0)


def test_edfl_cost_is_read_from_its_top_level_counts():
    edfl = {"verdict": "abstain", "sampler_calls": 4, "completion_tokens": 6, "wall_s": 1.5}
    assert recorded_cost(edfl) == {"sampler_calls": 4, "completion_tokens": 6,
                                   "sampling_seconds": 1.5}
    semantic = {"cost": {"sampler_calls": 3, "completion_tokens": 168}}
    assert recorded_cost(semantic) == semantic["cost"]
    assert recorded_cost({"verdict": "answer"}) is None


def _point(detector, threshold, coverage, alpha=0.9):
    return {"alpha": alpha, "delta": 0.1, "detector": detector, "threshold": threshold,
            "coverage": coverage, "answered": 10, "errors": 1, "upper_bound": 0.5}


def test_selections_consider_the_learned_combiner_at_its_summed_cost():
    detectors = {"mean_logprob": {"cost": {"upstream_calls": 0.0, "completion_tokens": 0.0}},
                 "semantic": {"cost": {"upstream_calls": 3.0, "completion_tokens": 140.0}}}
    points = [_point("mean_logprob", None, 0.0), _point("semantic", 0.7, 0.5)]
    combined = {"detectors": ["halt", "semantic"],
                "cost": {"upstream_calls": 3.0, "completion_tokens": 140.0},
                "operating_points": [_point("learned_combiner", 0.8, 0.6)]}
    [chosen] = selections(points, combined, detectors)
    assert chosen["detectors"] == ["halt", "semantic"] and chosen["combine"] == "learned"
    assert chosen["coverage"] == 0.6 and chosen["upstream_calls"] == 3.0
    [none] = selections([_point("mean_logprob", None, 0.0)], None, detectors)
    assert "detectors" not in none and none["alpha"] == 0.9


def test_a_bundle_records_its_selection_and_an_old_bundle_without_one_still_loads(tmp_path):
    old = load_bundle(SHIPPED, load_weights=False)
    assert old.manifest.selections == () and old.manifest.combiner_set is None
    assert old.selection(0.9, 0.1) is None
    chosen = {"alpha": 0.9, "delta": 0.1, "detectors": ["mean_logprob"], "combine": "single",
              "threshold": 0.485, "coverage": 0.37, "upper_bound": 0.898,
              "upstream_calls": 0.0, "completion_tokens": 0.0, "rule": "cheapest"}
    path = write_bundle(tmp_path / "fake", selections=[chosen],
                        combiner_set={"detectors": ["halt"], "operating_points": []})
    bundle = load_bundle(path, names={"fake"})
    assert bundle.selection(0.9, 0.1).detectors == ("mean_logprob",)
    assert bundle.manifest.combiner_set.detectors == ("halt",)
    manifest = json.loads((path / "bundle.json").read_text())
    manifest["selections"][0]["combine"] = "weighted"
    (path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="selections.0.combine"):
        load_bundle(path, names={"fake"})
