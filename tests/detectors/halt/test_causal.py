"""Causal HALT (detectors/halt/causal.py): its stream reads each token once and gives,
check by check, exactly what one pass over the whole prefix gives; the whole answer's
judgement is the stream's state after the last token."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from detectors.halt.adapter import logprob_matrix
from detectors.halt.causal import (
    CausalConfig,
    CausalHalt,
    CausalStream,
    CompiledCausal,
    load_causal,
)
from detectors.halt.causal_detector import CausalHaltPlugin
from detectors.halt.causal_train import CausalTrainConfig, prefix_loss, train_causal
from detectors.halt.data import synthetic_examples, synthetic_logprobs
from detectors.halt.features import halt_input
from detectors.halt.spec import CausalHaltSettings
from detectors.protocol import (
    AnswerView,
    FinishingPrefixStream,
    ProfileContext,
    Threshold,
    open_prefix_stream,
)
from tests.detectors.test_prefix_stream import random_tokens


def one_pass_risks(model: CausalHalt, lp: np.ndarray) -> np.ndarray:
    """P(hallucinated) of every prefix of ``lp`` from one pass over the whole matrix."""
    with torch.no_grad():
        x = torch.from_numpy(halt_input(lp)).unsqueeze(0)
        return torch.sigmoid(model.prefix_logits(x))[0].double().numpy()


def test_the_stream_fed_in_pieces_equals_one_pass_over_each_prefix():
    torch.manual_seed(0)
    model = CausalHalt(CausalConfig()).eval()
    lp = synthetic_logprobs(61, True, np.random.default_rng(4))
    expected = one_pass_risks(model, lp)
    stream = CausalStream(CompiledCausal(model))  # compiled loops against PyTorch's pass
    cuts = [0, 1, 8, 9, 16, 40, 61]
    for a, b in zip(cuts, cuts[1:], strict=False):
        assert stream.feed(lp[a:b]) == pytest.approx(expected[b - 1], abs=1e-5)
    assert stream.steps == 61


def test_a_prefix_reads_no_later_token():
    torch.manual_seed(1)
    model = CausalHalt(CausalConfig()).eval()
    rng = np.random.default_rng(5)
    lp = synthetic_logprobs(30, False, rng)
    other = lp.copy()
    other[20:] = synthetic_logprobs(10, True, rng)  # a different future
    a, b = one_pass_risks(model, lp), one_pass_risks(model, other)
    np.testing.assert_allclose(a[:20], b[:20], atol=1e-7)
    assert not np.allclose(a[20:], b[20:])


def test_the_loss_reads_every_prefix_and_ignores_padding():
    logits = torch.tensor([[0.0, 1.0, 5.0], [2.0, 9.0, 9.0]])
    lengths = torch.tensor([3, 1])
    labels = torch.tensor([1.0, 0.0])
    loss = prefix_loss(logits, lengths, labels, torch.tensor(1.0))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    first = 0.5 * (bce(logits[0], torch.ones(3)) + bce(logits[0, 2], torch.tensor(1.0)))
    second = 0.5 * (bce(logits[1, :1], torch.zeros(1)) + bce(logits[1, 0], torch.tensor(0.0)))
    assert float(loss) == pytest.approx(float((first + second) / 2), rel=1e-6)


def test_training_on_separable_synthetic_answers_learns_them():
    torch.set_num_threads(1)
    examples = synthetic_examples(120, seed=2)
    result = train_causal(examples[:90], examples[90:], CausalConfig(),
                          CausalTrainConfig(max_epochs=3))
    assert result.val["auroc_full"] > 0.9
    assert result.val["auroc_8"] > 0.9


def test_the_shipped_checkpoint_is_small_and_was_chosen_on_validation():
    ckpt = load_causal()
    weights = sum(p.numel() for p in ckpt.model.parameters())
    assert weights < 50_000
    assert ckpt.meta["prefix"]["chosen_on"] == "validation"
    assert not set(ckpt.meta["split"]["test_ids"]) & set(ckpt.meta["split"]["val_ids"])
    assert 0.0 < ckpt.threshold < 1.0 and 0.0 < ckpt.prefix_threshold < 1.0


def test_the_detectors_stream_finishes_with_the_whole_answers_judgement():
    plugin = CausalHaltPlugin.load_default()
    det = plugin.bind(CausalHaltSettings(enabled=True), ProfileContext())
    tokens = random_tokens(45, seed=9)
    stream = open_prefix_stream(det, det.prefix_threshold(None))
    assert isinstance(stream, FinishingPrefixStream)
    whole = one_pass_risks(plugin.checkpoint.model, logprob_matrix(tokens).values)

    async def run():
        for end in (8, 16, 24, 32, 40):
            fed = await stream.feed(tokens[end - 8:end])
            assert fed.risk == pytest.approx(whole[end - 1], abs=1e-5)
            assert fed.threshold == det.prefix_threshold(None)
        final = await stream.finish(tokens[40:])
        judged = await det.judge(None, AnswerView("", tokens), None)
        return final, judged
    final, judged = asyncio.run(run())
    assert final.risk == pytest.approx(judged.risk, abs=1e-12)  # the same loops
    assert final.threshold == judged.threshold == det.threshold()
    assert final.detail["streamed_state"] and final.detail["n_tokens"] == 45
    assert det.prefix_threshold(0.3) == Threshold(0.3, "profile")
