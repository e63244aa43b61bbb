import asyncio
import json
import time

import pytest

from detectors.edfl.config import EdflConfig
from detectors.edfl.gate import EdflGate, LruCache
from detectors.verdict import Verdict
from tests.detectors.edfl.fakes import LabelSampler, masked

QUESTION = [
    {"role": "user", "content": "In which year did Carlos Santana first play at Woodstock?"}
]


async def test_answers_when_the_skeletons_lack_what_the_full_prompt_has():
    sampler = LabelSampler(masked(0.97, 0.05))
    result = await EdflGate().run(QUESTION, sampler)
    assert result.verdict is Verdict.ANSWER
    assert result.posterior == pytest.approx(0.97)
    assert result.b2t > 0 and result.isr >= 1.0 and result.delta_bar >= result.b2t
    assert 0.0 <= result.risk <= 1.0 and result.risk == result.roh


async def test_abstains_when_the_skeletons_answer_as_readily_but_not_surely():
    # The full prompt adds no information over its skeletons: Δ̄ ≈ 0 < B2T.
    result = await EdflGate().run(QUESTION, LabelSampler(masked(0.8, 0.8)))
    assert result.verdict is Verdict.ABSTAIN
    assert result.delta_bar == pytest.approx(0.0, abs=1e-9)
    assert "ISR" in result.reason


async def test_a_full_prompt_that_refuses_never_passes():
    # Reference defect: the rule looked at Δ̄ and ISR only, never at which label the full
    # prompt chose. Skeletons refusing far harder give a refusing prompt Δ̄ > B2T (with the
    # default floor this needs an extreme ratio, so the floor and clip are opened here).
    config = EdflConfig(q_floor=1e-9, clip=30.0)
    result = await EdflGate(config).run(QUESTION, LabelSampler(masked(0.4, 1e-9)))
    assert result.isr >= 1.0
    assert result.delta_bar > result.b2t  # the budget alone would have let it through
    assert result.verdict is Verdict.ABSTAIN and "refusing" in result.reason


async def test_all_skeletons_answering_is_prior_sufficient_not_an_abstention():
    # Reference defect: B2T was not zeroed for q_lo ≥ 1 − h*, so a model that knows abstained.
    result = await EdflGate().run(QUESTION, LabelSampler(masked(0.97, 0.99)))
    assert result.delta_bar < 0  # the full prompt is even a little less sure
    assert result.b2t == 0.0 and result.prior_sufficient
    assert result.verdict is Verdict.ANSWER


async def test_zero_counts_do_not_make_the_clip_decide():
    # Sampling (no logprobs), 0 of 7 votes on every skeleton: Δ̄ = log(8/9 ÷ 1/9), not B = 12.
    sampler = LabelSampler(masked(1.0, 0.0), logprobs=False)
    result = await EdflGate(EdflConfig(n=7)).run(QUESTION, sampler)
    assert result.delta_bar == pytest.approx(2.0794, abs=1e-3)
    assert set(result.methods) == {"sampling"}


RICH = [{"role": "user", "content": (
    "Carlos Santana played Woodstock in 1969 with 3 drummers, Miles Davis in New York in 1970 "
    'with 5 horns, and "Black Magic Woman" at the Fillmore West in 1971 for 2 nights. Why?'
)}]  # fmt: skip


async def test_cost_is_at_most_one_plus_m_short_calls_with_logprobs():
    sampler = LabelSampler(masked(0.9, 0.2))
    result = await EdflGate(EdflConfig(m=6)).run(RICH, sampler)
    assert result.sampler_calls == len(sampler.calls) <= 7
    assert all(c["max_tokens"] <= 2 and c["n"] == 1 for c in sampler.calls)
    assert result.completion_tokens <= 2 * len(sampler.calls)
    assert result.sampler_calls + result.cache_hits == 7


async def test_calls_run_concurrently():
    sampler = LabelSampler(masked(0.9, 0.2), delay=0.1)
    started = time.perf_counter()
    result = await EdflGate().run(RICH, sampler)
    elapsed = time.perf_counter() - started
    assert result.sampler_calls == 7 and sampler.max_in_flight == 7
    assert elapsed < 0.35  # about one call long (0.1 s), not 1 + m calls (0.7 s)


async def test_estimates_are_cached_per_model_and_prompt():
    gate, sampler = EdflGate(), LabelSampler(masked(0.9, 0.2))
    first = await gate.run(QUESTION, sampler, model="m1")
    calls = len(sampler.calls)
    second = await gate.run(QUESTION, sampler, model="m1")
    assert len(sampler.calls) == calls and second.sampler_calls == 0 and second.cache_hits == 7
    assert second.verdict == first.verdict and second.priors == first.priors
    await gate.run(QUESTION, sampler, model="m2")
    assert len(sampler.calls) == 2 * calls


async def test_concurrent_runs_share_in_flight_estimates():
    gate, sampler = EdflGate(), LabelSampler(masked(0.9, 0.2), delay=0.05)
    a, b = await asyncio.gather(gate.run(QUESTION, sampler), gate.run(QUESTION, sampler))
    assert len(sampler.calls) == a.sampler_calls + b.sampler_calls == a.sampler_calls
    assert a.priors == b.priors


async def test_upstream_without_logprobs_is_remembered():
    gate, sampler = EdflGate(EdflConfig(n=5)), LabelSampler(masked(0.9, 0.2), logprobs=False)
    await gate.run(QUESTION, sampler)
    logprob_calls = sum(1 for c in sampler.calls if c.get("top_logprobs", 0) > 0)
    await gate.run(
        [{"role": "user", "content": "Another question about New York in 1990?"}], sampler
    )
    assert sum(1 for c in sampler.calls if c.get("top_logprobs", 0) > 0) == logprob_calls


async def test_evidence_prompts_use_evidence_erase_and_identical_skeletons_cost_one_call():
    messages = [
        {"role": "user", "content": "Context: Santana played Woodstock in 1969.\nQuestion: When?"}
    ]
    sampler = LabelSampler(masked(0.98, 0.1))
    result = await EdflGate().run(messages, sampler)
    assert result.mode == "evidence" and len(sampler.calls) == 2
    assert all("1969" not in s for s in result.skeletons)
    assert result.verdict is Verdict.ANSWER


async def test_upstream_errors_propagate():
    async def broken(messages, **kwargs):
        raise RuntimeError("upstream down")

    with pytest.raises(RuntimeError):
        await EdflGate().run(QUESTION, broken)


async def test_result_to_dict_is_json_safe():
    result = await EdflGate().run(QUESTION, LabelSampler(masked(0.97, 0.99)))
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["isr"] is None and payload["prior_sufficient"] is True
    assert payload["verdict"] == "answer" and len(payload["S"]) == 6
    assert len(payload["skeletons"]) == 6 and payload["label_masses"][0] == pytest.approx(1.0)


def test_lru_cache_is_bounded():
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)
    assert len(cache) == 2 and cache.get("b") is None and cache.get("a") == 1
