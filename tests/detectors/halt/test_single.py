"""The compiled single-answer path (input features and forward) equals the numpy and PyTorch one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detectors.halt.data import collate, synthetic_logprobs
from detectors.halt.features import halt_input
from detectors.halt.model import HaltConfig, HaltModel, salient_count, salient_counts
from detectors.halt.scorer import HaltScorer
from detectors.halt.single import SingleAnswerHalt, single_input


def torch_logit(model: HaltModel, x: np.ndarray) -> float:
    with torch.inference_mode():
        return float(model(*collate([x]))[0])


@pytest.mark.parametrize("arch", ["small", "full"])
def test_single_answer_logit_matches_torch(arch):
    torch.manual_seed(3)
    model = HaltModel(HaltConfig.for_arch(arch)).eval()
    with torch.no_grad():  # non-zero biases, so every term of the GRU is exercised
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    single = SingleAnswerHalt(model)
    rng = np.random.default_rng(0)
    for length in (1, 2, 7, 20, 33, 150):
        x = halt_input(synthetic_logprobs(length, bool(length % 2), rng))
        assert single.logit(x) == pytest.approx(torch_logit(model, x), abs=2e-5)


def test_the_shipped_checkpoint_scores_the_same_both_ways():
    scorer = HaltScorer.load_default()
    rng = np.random.default_rng(1)
    answers = [synthetic_logprobs(n, n % 3 == 0, rng) for n in (1, 5, 8, 48, 64)]
    batched = scorer.risks(answers)  # one torch forward over all five
    alone = scorer.single_risks(answers)  # the numpy path, one by one
    np.testing.assert_allclose(alone, batched, atol=1e-5)
    one = scorer.score_one([[{"token": "a", "logprob": -0.1, "top_logprobs": []}]])[0]
    assert one.risk == pytest.approx(scorer.score_batch(
        [[{"token": "a", "logprob": -0.1, "top_logprobs": []}]])[0].risk, abs=1e-5)


def test_salient_count_equals_the_batched_one():
    lengths = torch.arange(1, 3001)
    assert [salient_count(n, 0.15) for n in range(1, 3001)] == \
        salient_counts(lengths, 0.15).tolist()


def test_compiled_input_features_equal_the_numpy_ones():
    """single_input is halt_input's twin for the one-answer path: same five statistics and
    log-probs, including padded, tied and dominated rows."""
    rng = np.random.default_rng(7)
    matrices = [synthetic_logprobs(n, n % 2 == 0, rng) for n in (1, 2, 8, 48, 200)]
    padded = np.full((3, 20), -30.0)
    padded[:, 0] = [-0.01, -30.0, -5.0]  # no alternatives; a floor-level selected token
    tied = np.full((2, 20), -2.0)  # every alternative as likely as the selected token
    dominated = np.full((1, 20), -30.0)
    dominated[0, 0] = 0.0
    for lp in [*matrices, padded, tied, dominated]:
        np.testing.assert_allclose(single_input(lp), halt_input(lp), rtol=1e-6, atol=1e-6)
