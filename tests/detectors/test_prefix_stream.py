"""Prefix streams (detectors/protocol.py): a detector that carries its state reads each
token once and gives, check by check, the judgement of the whole prefix; a detector
without one is judged whole at each check through the same interface."""

from __future__ import annotations

import asyncio
import random

import pytest

from detectors.logprob_stats import stats
from detectors.logprob_stats.detector import LogprobStatPlugin, LogprobStatStream
from detectors.logprob_stats.spec import LogprobStatSettings
from detectors.protocol import (
    Judgement,
    MissingLogprobs,
    ProfileContext,
    RejudgingPrefixStream,
    Threshold,
    open_prefix_stream,
    verdict_at,
)

NAMES = ("mean_logprob", "min_logprob", "topk_entropy", "seq_prob")


def random_tokens(n: int, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        top = sorted((-rng.expovariate(0.7) for _ in range(rng.randint(1, 20))), reverse=True)
        chosen = top[rng.randrange(len(top))]
        out.append({"token": f"t{i}", "logprob": chosen,
                    "top_logprobs": [{"token": f"a{i}_{j}", "logprob": lp}
                                     for j, lp in enumerate(top)]})
    return out


def test_running_stats_fed_in_pieces_equal_the_whole_answers_scores():
    tokens = random_tokens(97)
    state = stats.RunningStats()
    cuts = [0, 1, 8, 9, 40, 64, 97]
    for a, b in zip(cuts, cuts[1:], strict=False):
        state.add(tokens[a:b])
        assert state.raw() == stats.raw_scores(tokens[:b])  # the same sums, bit for bit
        assert state.scores() == stats.scores(tokens[:b])
    assert stats.RunningStats().raw() is None


@pytest.mark.parametrize("name", NAMES)
def test_a_logprob_detectors_stream_judges_each_prefix_like_the_stateless_path(name):
    det = LogprobStatPlugin(name).bind(LogprobStatSettings(enabled=True), ProfileContext())
    threshold = Threshold(0.4, "profile")
    stream = open_prefix_stream(det, threshold)
    assert isinstance(stream, LogprobStatStream)
    tokens = random_tokens(50, seed=11)

    async def run():
        for end in range(8, 51, 8):
            fed = await stream.feed(tokens[end - 8:end])
            whole = await det.judge_prefix(tokens[:end], threshold)
            assert (fed.risk, fed.verdict, fed.detail) == (whole.risk, whole.verdict,
                                                           whole.detail)
            assert fed.detail["scores"]["n_tokens"] == end
    asyncio.run(run())


def test_a_stream_without_tokens_raises_missing_logprobs():
    det = LogprobStatPlugin("mean_logprob").bind(LogprobStatSettings(enabled=True),
                                                 ProfileContext())
    stream = open_prefix_stream(det, Threshold(0.5, "default"))
    with pytest.raises(MissingLogprobs):
        asyncio.run(stream.feed([]))


class CountingJudge:
    """A prefix judge without a stream of its own: it records what each check read."""

    def __init__(self):
        self.lengths: list[int] = []

    def prefix_threshold(self, profile_value):
        return Threshold(0.5, "default")

    async def judge_prefix(self, tokens, threshold):
        self.lengths.append(len(tokens))
        risk = len(tokens) / 100
        return Judgement("counting", verdict_at(risk, threshold), risk, threshold)


def test_a_judge_without_a_stream_is_judged_on_the_whole_prefix_at_each_check():
    judge = CountingJudge()
    stream = open_prefix_stream(judge, Threshold(0.5, "default"))
    assert isinstance(stream, RejudgingPrefixStream)
    tokens = random_tokens(24)

    async def run():
        return [await stream.feed(tokens[i:i + 8]) for i in range(0, 24, 8)]
    results = asyncio.run(run())
    assert judge.lengths == [8, 16, 24]
    assert [r.risk for r in results] == [0.08, 0.16, 0.24]


def test_mean_logprob_prefix_threshold_is_the_one_chosen_on_validation_prefixes():
    """profile value → detectors/logprob_stats/prefix.json (bench/halt_prefix.py) → the
    answer threshold's resolution."""
    from detectors.logprob_stats.detector import prefix_thresholds

    chosen = prefix_thresholds()["mean_logprob"]
    det = LogprobStatPlugin("mean_logprob").bind(LogprobStatSettings(enabled=True),
                                                 ProfileContext())
    assert det.prefix_threshold(None) == Threshold(chosen, "calibrated")
    assert det.prefix_threshold(0.7) == Threshold(0.7, "profile")
    other = LogprobStatPlugin("min_logprob").bind(LogprobStatSettings(enabled=True),
                                                  ProfileContext())
    assert other.prefix_threshold(None) == other.threshold()  # none chosen for it
