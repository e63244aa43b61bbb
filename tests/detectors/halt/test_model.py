import dataclasses

import numpy as np
import pytest
import torch

from detectors.halt.data import collate, synthetic_logprobs
from detectors.halt.features import halt_input
from detectors.halt.model import HaltConfig, HaltModel, count_parameters, top_q_pool

TINY = HaltConfig(proj_dim=16, hidden_dim=8, num_layers=2)


def naive_pool(hidden, lengths, q):
    """The reference's per-item loop (TopQPooling in the seed)."""
    out = []
    for b in range(hidden.shape[0]):
        n = int(lengths[b])
        k = max(1, int(np.ceil(np.float32(n) * np.float32(q))))
        scores = hidden[b, :n].norm(dim=1)
        out.append(hidden[b, scores.topk(k).indices].mean(dim=0))
    return torch.stack(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_pooling_equals_the_naive_loop(seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 60, (9,), generator=g)
    hidden = torch.randn(9, int(lengths.max()), 12, generator=g)
    hidden[torch.arange(hidden.shape[1]) >= lengths.unsqueeze(1)] = 100.0  # loud padding
    torch.testing.assert_close(top_q_pool(hidden, lengths, 0.15),
                               naive_pool(hidden, lengths, 0.15), atol=1e-6, rtol=1e-6)


def _answers(n, seed):
    rng = np.random.default_rng(seed)
    return [halt_input(synthetic_logprobs(int(rng.integers(1, 40)), bool(i % 2), rng))
            for i in range(n)]


def test_a_batch_scores_each_answer_as_if_alone():
    torch.manual_seed(0)
    model = HaltModel(TINY).eval()
    answers = _answers(7, seed=3)
    with torch.no_grad():
        batched = model(*collate(answers))
        alone = torch.cat([model(*collate([a])) for a in answers])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_same_outputs_as_the_reference_module_with_the_same_weights():
    from bench.halt_reference import HALT, HALTConfig

    torch.manual_seed(1)
    ours = HaltModel(TINY).eval()
    ref = HALT(HALTConfig(proj_dim=16, hidden_dim=8, num_layers=2)).eval()
    ref.load_state_dict(ours.state_dict())
    x, lengths = collate(_answers(6, seed=4))
    with torch.no_grad():
        torch.testing.assert_close(ours(x, lengths), ref(x, lengths), atol=1e-5, rtol=0)


def test_presets_and_frozen_config():
    assert count_parameters(HaltModel(HaltConfig.small())) == pytest.approx(0.51e6, rel=0.03)
    assert HaltConfig.for_arch("full") == HaltConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        HaltConfig().top_q = 0.5  # type: ignore[misc]
    with pytest.raises(ValueError):
        HaltConfig.for_arch("huge")


def test_gradients_reach_the_input_projection():
    model = HaltModel(TINY).train()
    x, lengths = collate(_answers(4, seed=5))
    model(x, lengths).sum().backward()
    assert model.projection.fc1.weight.grad is not None
    assert model.projection.fc1.weight.grad.abs().sum() > 0
