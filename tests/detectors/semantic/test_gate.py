import asyncio
import json
import time

import pytest

from detectors.sampling import Sample
from detectors.semantic import SampleSet, SemanticConfig, SemanticGate
from detectors.semantic.gate import semantic_verdict
from detectors.semantic.lexical import LexicalEntailment
from detectors.verdict import Verdict
from tests.detectors.semantic.fakes import MeaningBackend
from tests.scripted_sampler import ScriptedSampler, sample_from_text

MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer briefly."}]


def is_skeleton(messages) -> bool:
    return "[MASK]" in messages[-1]["content"] or messages[-1]["content"] != MESSAGES[-1]["content"]


def scripted(full: list[str], skeleton: list[str]) -> ScriptedSampler:
    """Full prompt -> full[i]; any skeleton prompt -> skeleton[i] (cycled)."""
    def respond(messages, kwargs, i):
        answers = skeleton if is_skeleton(messages) else full
        return sample_from_text(answers[i % len(answers)])
    return ScriptedSampler(respond)


def gate(**overrides) -> SemanticGate:
    return SemanticGate(SemanticConfig(**overrides), backend=MeaningBackend())


async def test_sampling_asks_once_for_the_full_prompt_and_once_per_skeleton():
    sampler = scripted(["Paris"], ["Paris"])
    result = await gate(M=10, m=4, skeleton_samples=3).run(MESSAGES, sampler)
    full = [kw for msgs, kw in sampler.calls if not is_skeleton(msgs)]
    skel = [kw for msgs, kw in sampler.calls if is_skeleton(msgs)]
    assert [kw["n"] for kw in full] == [10] and [kw["n"] for kw in skel] == [3] * 4
    assert all(kw["temperature"] == 1.0 and kw["top_p"] == 0.9 for _, kw in sampler.calls)
    assert all(kw["top_logprobs"] > 0 for _, kw in sampler.calls)  # masses need logprobs
    assert result.cost.sampler_calls == 5 and result.cost.samples == 22


async def test_every_answer_gets_its_own_seed_so_a_prompt_gets_one_verdict():
    sampler = scripted(["Paris"], ["Paris"])
    await gate(M=10, m=4, skeleton_samples=3, sample_seed=7).run(MESSAGES, sampler)
    seeds = sorted(kw["seed"] + i for _, kw in sampler.calls for i in range(kw["n"]))
    assert seeds == list(range(7, 7 + 22))  # seed+i per answer: 22 distinct seeds
    unseeded = scripted(["Paris"], ["Paris"])
    await gate(sample_seed=None).run(MESSAGES, unseeded)
    assert all(kw["seed"] is None for _, kw in unseeded.calls)


async def test_sampling_calls_run_concurrently():
    class SlowSampler:
        async def __call__(self, messages, **kwargs):
            await asyncio.sleep(0.2)
            return [sample_from_text("Paris")] * kwargs["n"]

    start = time.perf_counter()
    await gate(m=6).run(MESSAGES, SlowSampler())
    assert time.perf_counter() - start < 0.6  # 7 calls of 0.2 s each, not 1.4 s


async def test_confident_consistent_answers_pass():
    result = await gate().run(MESSAGES, scripted(["Paris", "It is Paris."], ["Paris"]))
    assert result.verdict is Verdict.ANSWER and result.reasons == ()
    assert result.p_star == 1.0 and result.entropy_count == 0.0 and result.risk == 0.0
    assert result.q_lo == pytest.approx(4 / 5)  # Laplace over 3 agreeing answers
    assert result.isr >= 1.0 and result.delta_bar >= result.b2t


async def test_diffuse_answers_abstain_on_the_posterior_latch():
    full = ["Paris", "Lyon", "Paris", "Nice", "Paris"]
    result = await gate().run(MESSAGES, scripted(full, ["Paris"]))
    assert result.verdict is Verdict.ABSTAIN
    assert "posterior_not_dominant" in result.reasons
    assert result.p_star == pytest.approx(0.6) and len(result.clusters) == 3
    assert 0.0 < result.risk < 1.0


async def test_a_refusing_top_meaning_never_passes():
    result = await gate(h_star=0.3).run(MESSAGES, scripted(["I don't know."], ["I don't know."]))
    assert result.top_is_refusal and result.verdict is Verdict.ABSTAIN
    assert result.reasons == ("top_meaning_refusal",)


async def test_regression_disagreeing_skeletons_lower_the_prior_with_one_full_cluster():
    agree = await gate().run(MESSAGES, scripted(["Paris"], ["Paris"]))
    disagree = await gate().run(MESSAGES, scripted(["Paris"], ["Rome", "Madrid", "Berlin"]))
    assert len(disagree.clusters) == 1  # one full-prompt meaning in both runs
    assert disagree.q_lo == pytest.approx(1 / 5) and agree.q_lo == pytest.approx(4 / 5)
    assert disagree.top_cluster.prior < 0.2 and disagree.prior_other > 0.8
    assert disagree.b2t > agree.b2t + 1.0
    # Where it decides: at h* = 0.3 agreeing skeletons make the prior sufficient (answer
    # without a budget; the reference, whose prior is always 1, does so for both), while
    # disagreeing ones must earn Δ̄ >= B2T + margin.
    cfg = {"h_star": 0.3, "margin": 2.0}
    agree = await gate(**cfg).run(MESSAGES, scripted(["Paris"], ["Paris"]))
    disagree = await gate(**cfg).run(MESSAGES, scripted(["Paris"], ["Rome", "Madrid"]))
    assert agree.prior_sufficient and agree.verdict is Verdict.ANSWER
    assert not disagree.prior_sufficient and disagree.verdict is Verdict.ABSTAIN
    assert disagree.reasons == ("budget_below_b2t",)


async def test_prior_sufficiency_shortcut_answers_without_a_budget():
    # h* = 0.3: 3 of 3 agreeing skeleton answers give q_lo = 0.8 >= 0.7, so B2T = 0.
    result = await gate(h_star=0.3, margin=5.0).run(MESSAGES, scripted(["Paris"], ["Paris"]))
    assert result.prior_sufficient and result.b2t == 0.0 and result.isr == float("inf")
    assert result.verdict is Verdict.ANSWER  # the huge margin is not asked for


def test_decide_lists_every_failed_condition():
    cfg = SemanticConfig()
    verdict, reasons, sufficient = semantic_verdict(0.5, 0.1, 0.2, 2.0, 0.1, True, cfg)
    assert verdict is Verdict.ABSTAIN and not sufficient
    assert set(reasons) == {"posterior_not_dominant", "top_meaning_refusal",
                            "isr_below_threshold", "budget_below_b2t"}
    assert semantic_verdict(0.96, 0.96, -1.0, 0.0, float("inf"), False, cfg) == (
        Verdict.ANSWER, (), True)


async def test_chosen_answer_is_the_original_when_it_means_the_top_meaning():
    sampler = scripted(["Paris", "Paris, France", "It is Paris."], ["Paris"])
    same = await gate().run(MESSAGES, sampler, original_answer="The answer is Paris")
    assert same.chosen_answer == "The answer is Paris" and same.original_in_top is True
    other = await gate().run(MESSAGES, sampler, original_answer="Lyon")
    assert other.original_in_top is False
    assert other.chosen_answer in {"Paris", "Paris, France", "It is Paris."}
    none = await gate().run(MESSAGES, sampler)
    assert none.original_in_top is None


async def test_kl_mode_and_probability_mass():
    def respond(messages, kwargs, i):
        text = ["Paris", "Lyon"][i % 2]
        return sample_from_text(text, logprob=-0.1 if text == "Paris" else -3.0)
    result = await gate(delta_mode="kl", mass="prob").run(MESSAGES, ScriptedSampler(respond))
    assert result.entropy_count == pytest.approx(0.6931, abs=1e-3)
    assert result.entropy_prob < result.entropy_count  # Paris is far more probable
    assert result.p_star > 0.9 and result.delta_mode == "kl" and result.delta_bar > 0


async def test_to_dict_is_strict_json_and_sample_sets_round_trip():
    g = gate(h_star=0.3)
    sampler = scripted(["Paris"], ["Paris"])
    draws = await g.sample(MESSAGES, sampler)
    back = SampleSet.from_dict(json.loads(json.dumps(draws.to_dict())))
    assert back.question == draws.question and len(back.skeletons) == len(draws.skeletons)
    for got, want in zip(back.full, draws.full, strict=True):  # alternatives are dropped
        assert got.text == want.text and got.completion_tokens == want.completion_tokens
        assert [t.logprob for t in got.tokens] == [t.logprob for t in want.tokens]
    result = await g.analyse(draws, MeaningBackend())
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["verdict"] == "answer" and payload["isr"] is None  # inf -> null
    assert payload["clusters"][0]["members"] == list(range(10))


async def test_llm_backend_asks_the_upstream_and_caches_judgements():
    def respond(messages, kwargs, i):
        content = messages[-1]["content"]
        if content.startswith("We are evaluating"):
            one, two = (line.split(": ", 1)[1] for line in content.splitlines()[2:4])
            same = one.split()[-1].strip(".") == two.split()[-1].strip(".")
            return Sample("Entailment." if same else "Contradiction.", completion_tokens=2)
        if is_skeleton(messages):
            return sample_from_text("Paris")
        return sample_from_text(["Paris", "It is Paris.", "Lyon"][i % 3])

    sampler = ScriptedSampler(respond)
    g = SemanticGate(SemanticConfig(backend="llm", m=2))
    first = await g.run(MESSAGES, sampler)
    judge_calls = [kw for msgs, kw in sampler.calls if msgs[-1]["content"].startswith("We are")]
    assert judge_calls and all(kw["temperature"] == 0.0 for kw in judge_calls)
    assert first.cost.sampler_calls == 3 + len(judge_calls)
    assert [len(c.members) for c in first.clusters] == [7, 3]
    second = await g.run(MESSAGES, sampler)
    assert second.cost.entailment["backend_calls"] == 0  # every judgement from the cache
    assert second.cost.entailment["cache_hits"] > 0 and second.cost.sampler_calls == 3


async def test_non_llm_backends_never_call_the_judge():
    sampler = scripted(["Paris", "It is Paris.", "Lyon"], ["Paris"])
    g = SemanticGate(SemanticConfig(backend="lexical", m=2))
    result = await g.run(MESSAGES, sampler)
    assert len(sampler.calls) == 3 and result.cost.sampler_calls == 3
    assert isinstance(g.backend_for(sampler), LexicalEntailment)


def test_config_validates_its_knobs():
    with pytest.raises(ValueError):
        SemanticConfig(backend="magic")
    with pytest.raises(ValueError):
        SemanticConfig(backend="nli")  # needs a local model path
    with pytest.raises(ValueError):
        SemanticConfig(delta_mode="x")


async def test_no_full_answers_is_an_error_not_a_verdict():
    empty = SampleSet(question="q", full=(), skeletons=((),), sampler_calls=2, seconds=0.0)
    with pytest.raises(ValueError):
        await gate().analyse(empty, MeaningBackend())
