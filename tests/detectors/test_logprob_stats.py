"""The four logprob scores: their equations against direct computations, every token shape
alike, and the detectors' threshold resolution (profile → calibrated → default)."""

from __future__ import annotations

import asyncio
import math

import pytest

from detectors.logprob_stats import stats
from detectors.logprob_stats.detector import (
    DEFAULT_THRESHOLD,
    LogprobStatPlugin,
    calibrated_thresholds,
)
from detectors.logprob_stats.spec import LogprobStatSettings
from detectors.protocol import AnswerView, MissingLogprobs, ProfileContext
from detectors.sampling import TokenLogprob
from detectors.verdict import Verdict


def openai_token(token: str, logprob: float, top: list[tuple[str, float]]) -> dict:
    return {"token": token, "logprob": logprob,
            "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}


TOKENS = [openai_token("Paris", -0.1, [("Paris", -0.1), ("Lyon", -2.5), ("Nice", -3.0)]),
          openai_token(" is", -1.2, [(" was", -0.6), (" is", -1.2)]),
          openai_token(".", -0.01, [(".", -0.01)])]


def test_scores_are_their_equations():
    lps = [-0.1, -1.2, -0.01]
    raw = stats.raw_scores(TOKENS)
    assert raw["neg_mean_logprob"] == pytest.approx(-sum(lps) / 3)
    assert raw["neg_min_logprob"] == pytest.approx(1.2)
    assert raw["sequence_probability"] == pytest.approx(math.exp(sum(lps) / 3))

    def entropy(values):  # direct: renormalise, −Σ p log p, / log K
        p = [math.exp(v) for v in values]
        p = [x / sum(p) for x in p]
        return -sum(x * math.log(x) for x in p) / math.log(len(p))

    expected = (entropy([-0.1, -2.5, -3.0]) + entropy([-0.6, -1.2]) + 0.0) / 3
    assert raw["mean_topk_entropy"] == pytest.approx(expected)
    risks = stats.scores(TOKENS)
    s = -sum(lps) / 3
    assert risks["mean_logprob"] == pytest.approx(s / (1 + s))
    assert risks["min_logprob"] == pytest.approx(1.2 / 2.2)
    assert risks["seq_prob"] == pytest.approx(1 - math.exp(-s))
    assert risks["topk_entropy"] == pytest.approx(expected)
    assert all(0.0 <= r <= 1.0 for r in risks.values())


def test_every_token_shape_gives_the_same_scores():
    records = [{"token": t["token"], "logprob": t["logprob"],
                "top": [[a["token"], a["logprob"]] for a in t["top_logprobs"]]} for t in TOKENS]
    dataclasses = [TokenLogprob(t["token"], t["logprob"],
                                tuple((a["token"], a["logprob"]) for a in t["top_logprobs"]))
                   for t in TOKENS]
    assert stats.scores(records) == stats.scores(TOKENS) == stats.scores(dataclasses)


def test_uniform_alternatives_have_entropy_one_and_a_sure_token_zero():
    uniform = openai_token("a", math.log(0.25), [(c, math.log(0.25)) for c in "abcd"])
    assert stats.mean_topk_entropy([uniform]) == pytest.approx(1.0)
    assert stats.mean_topk_entropy([openai_token("a", 0.0, [])]) == 0.0


def test_riskier_answers_score_higher():
    confident = [openai_token("x", -0.05, [("x", -0.05), ("y", -4.0)])] * 5
    unsure = [openai_token("x", -2.0, [("y", -1.5), ("x", -2.0), ("z", -2.2)])] * 5
    low, high = stats.scores(confident), stats.scores(unsure)
    assert all(high[name] > low[name] for name in low)


def test_no_logprobs_no_scores():
    assert stats.scores([]) is None
    assert stats.scores([{"token": "a", "logprob": None, "top_logprobs": []}]) is None


def _judge(name: str, settings: LogprobStatSettings, tokens):
    det = LogprobStatPlugin(name).bind(settings, ProfileContext())
    return asyncio.run(det.judge(None, AnswerView("", tokens), None))


@pytest.mark.parametrize("name", ["mean_logprob", "min_logprob", "topk_entropy", "seq_prob"])
def test_threshold_resolution(name):
    calibrated = calibrated_thresholds()
    assert name in calibrated  # shipped: chosen on validation (calibrate-logprob-stats)
    judged = _judge(name, LogprobStatSettings(enabled=True), TOKENS)
    assert judged.threshold.source == "calibrated"
    assert judged.threshold.value == calibrated[name]
    own = _judge(name, LogprobStatSettings(enabled=True, threshold=0.0), TOKENS)
    assert own.threshold.source == "profile" and own.verdict is Verdict.ABSTAIN
    assert judged.risk == own.risk == stats.scores(TOKENS)[name]


def test_without_calibration_the_default(tmp_path):
    assert calibrated_thresholds(tmp_path / "none.json") == {}
    assert DEFAULT_THRESHOLD == 0.5


def test_missing_logprobs_is_raised():
    with pytest.raises(MissingLogprobs):
        _judge("mean_logprob", LogprobStatSettings(enabled=True), None)
