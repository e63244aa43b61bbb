import asyncio
import threading
import time

import pytest
import torch

from detectors.batching import MicroBatcher
from detectors.halt.adapter import logprob_matrix
from detectors.halt.model import HaltConfig, HaltModel
from detectors.halt.scorer import HaltResult, HaltScorer, MissingLogprobs
from detectors.sampling import TokenLogprob
from detectors.verdict import Verdict


def _tokens(n, logprob=-0.4):
    return [TokenLogprob(f"t{i}", logprob, ((f"t{i}", logprob), ("x", -2.0), ("y", -3.5)))
            for i in range(n)]


@pytest.fixture(scope="module")
def tiny_scorer():
    torch.manual_seed(0)
    return HaltScorer(HaltModel(HaltConfig(proj_dim=16, hidden_dim=8, num_layers=1)),
                      threshold=0.5, model_name="tiny-test")


def test_score_batch_results_follow_the_detector_convention(tiny_scorer):
    results = tiny_scorer.score_batch([_tokens(5), _tokens(12, -1.5)])
    for r in results:
        assert isinstance(r, HaltResult) and 0.0 <= r.risk <= 1.0
        assert r.verdict == (Verdict.ABSTAIN if r.risk >= r.threshold else Verdict.ANSWER)
        d = r.to_dict()
        assert d["score"] == r.risk and d["model"] == "tiny-test"
        assert d["top_k_available"] == {"min": 2, "mean": 2.0}
    assert [r.n_tokens for r in results] == [5, 12]


def test_missing_logprobs_is_reported_not_guessed(tiny_scorer):
    with pytest.raises(MissingLogprobs) as info:
        tiny_scorer.score_batch([_tokens(3), None, []])
    assert info.value.indices == (1, 2)


async def test_async_score_raises_missing_logprobs(tiny_scorer):
    with pytest.raises(MissingLogprobs):
        await tiny_scorer.score(None)


async def test_an_idle_scorer_starts_at_once(tiny_scorer):
    """No waiting for companions: a lone short answer on a quiet scorer is scored inline,
    the next one right after it in the worker thread, each its own batch."""
    scorer = HaltScorer(tiny_scorer.model, 0.5, "tiny-test")
    scorer._batcher.quiet_gap_s = 60.0  # "right after", however slow this machine is now
    first = await scorer.score(_tokens(3))
    second = await scorer.score(_tokens(5))
    assert scorer._batcher.inline_runs == 1 and scorer._batcher.batch_sizes == [1]
    expected = scorer.score_batch([_tokens(3), _tokens(5)])
    assert [first.risk, second.risk] == pytest.approx([r.risk for r in expected], abs=1e-6)


async def test_a_long_answer_never_runs_on_the_event_loop(tiny_scorer):
    scorer = HaltScorer(tiny_scorer.model, 0.5, "tiny-test")
    await scorer.score(_tokens(100))
    assert scorer._batcher.inline_runs == 0 and scorer._batcher.batch_sizes == [1]


async def test_concurrent_calls_share_one_forward_pass(tiny_scorer):
    scorer = HaltScorer(tiny_scorer.model, 0.5, "tiny-test")
    scorer._batcher.quiet_gap_s = 60.0  # a slow inline run must not make the burst "quiet"
    answers = [_tokens(n) for n in range(1, 11)]
    results = await asyncio.gather(*(scorer.score(a) for a in answers))
    # the first of the burst found the scorer quiet and ran inline; the rest shared one pass
    assert scorer._batcher.inline_runs == 1 and scorer._batcher.batch_sizes == [9]
    expected = scorer.score_batch(answers)
    assert [r.risk for r in results] == pytest.approx([r.risk for r in expected], abs=1e-6)


async def test_the_forward_pass_runs_off_the_event_loop():
    loop_thread = threading.get_ident()
    seen = []

    def slow_batch(items):
        seen.append(threading.get_ident())
        time.sleep(0.2)
        return [len(i) for i in items]

    batcher = MicroBatcher(slow_batch, max_batch=4)
    ticks = 0

    async def ticker():
        nonlocal ticks
        for _ in range(10):
            await asyncio.sleep(0.01)
            ticks += 1

    results, _ = await asyncio.gather(
        asyncio.gather(*(batcher.submit([0] * n) for n in (1, 2, 3, 4, 5, 6))), ticker())
    assert results == [1, 2, 3, 4, 5, 6]
    assert ticks == 10 and loop_thread not in seen
    assert batcher.batch_sizes == [4, 2]  # max_batch respected


async def test_an_error_reaches_every_caller_of_the_batch():
    def broken(items):
        raise RuntimeError("boom")

    batcher = MicroBatcher(broken, max_batch=8)
    outcomes = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)


def test_default_checkpoint_scores_real_answers(shared_records):
    scorer = HaltScorer.load_default()
    assert scorer.model_name.startswith("SmolLM2-135M")
    assert 0.0 < scorer.threshold < 1.0
    records = shared_records[:16]
    results = scorer.score_batch([r["tokens"] for r in records])
    for record, result in zip(records, results, strict=True):
        assert result.n_tokens == len(record["tokens"])
        assert 0.0 <= result.risk <= 1.0
        assert result.top_k_min >= 0 and result.top_k_mean <= 20
        assert logprob_matrix(record["tokens"]).n_tokens == result.n_tokens
    assert len({round(r.risk, 6) for r in results}) > 1  # answers get different risks
