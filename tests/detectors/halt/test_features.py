import math

import numpy as np
import pytest
import torch

from detectors.halt.features import (
    binary_decision_entropy,
    engineered_features,
    halt_input,
)

LN = math.log


def _h(ps):
    return -sum(p * LN(p) for p in ps)


def test_engineered_features_equal_hand_computed_values():
    lp = np.log([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2]])  # (T=2, K=3)
    got = engineered_features(lp)
    h_dec = [_h([2 / 3, 1 / 3]), _h([0.25, 0.75])]
    expected = np.array([
        [(LN(0.5) + 2 * LN(0.25)) / 3, 1.0, _h([0.5, 0.25, 0.25]), LN(2), h_dec[0]],
        [(2 * LN(0.2) + LN(0.6)) / 3, 2.0, _h([0.2, 0.6, 0.2]), _h([0.75, 0.25]),
         h_dec[1] - h_dec[0]],
    ])
    np.testing.assert_allclose(got, expected, atol=1e-7)


def test_rank_proxy_counts_more_likely_alternatives():
    lp = np.log([[0.1, 0.4, 0.3, 0.2]])
    assert engineered_features(lp)[0, 1] == 4.0


def test_halt_input_is_stats_then_raw_logprobs():
    lp = np.log(np.array([[0.7, 0.2, 0.1]] * 4))
    x = halt_input(lp)
    assert x.shape == (4, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 5:], lp, rtol=1e-6)


def test_dominated_token_gives_no_nan_where_reference_float32_does():
    # the selected token dominates: the reference's pc clamps to 1 - 1e-9 == 1.0 in float32
    lp = np.array([[0.0] + [-40.0] * 19, [-1e-12] + [-60.0] * 19, [-0.5, -1.0] + [-30.0] * 18])
    feats = engineered_features(lp)
    assert np.isfinite(feats).all()
    assert binary_decision_entropy(lp[:1])[0] == pytest.approx(0.0, abs=1e-15)
    from bench.halt_reference import compute_engineered_features

    reference = compute_engineered_features(torch.tensor(lp, dtype=torch.float32))
    assert torch.isnan(reference).any()  # the defect this module avoids
    finite = torch.isfinite(reference).numpy()
    np.testing.assert_allclose(feats[finite], reference.numpy()[finite], atol=1e-5)


def test_binary_entropy_matches_direct_formula_where_that_is_stable():
    rng = np.random.default_rng(0)
    lp = -rng.exponential(2.0, (50, 20))
    d = lp[:, 0] - lp[:, 1:].max(axis=1)
    pc = 1 / (1 + np.exp(-d))
    direct = -(pc * np.log(pc) + (1 - pc) * np.log(1 - pc))
    np.testing.assert_allclose(binary_decision_entropy(lp), direct, atol=1e-10)


def test_matches_reference_features_on_ordinary_rows():
    from bench.halt_reference import build_halt_input

    rng = np.random.default_rng(1)
    lp = -np.sort(rng.exponential(3.0, (30, 20)), axis=1)
    lp[:, [0, 3]] = lp[:, [3, 0]]  # the selected token is not always the top one
    ours = halt_input(lp)
    reference = build_halt_input(torch.tensor(lp, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_rejects_a_single_column():
    with pytest.raises(ValueError):
        engineered_features(np.zeros((3, 1)))
