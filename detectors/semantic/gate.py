"""The semantic-entropy gate: sample, cluster by meaning, weigh against skeleton priors.

    gate = SemanticGate(SemanticConfig(backend="embedding"))
    result = await gate.run(messages, sampler, original_answer="Paris")
    result.verdict, result.risk, result.chosen_answer, result.to_dict()

Steps (Farquhar et al., Nature 2024; toolkit overview §2, semantic head):
1. M answers to the full prompt and ``skeleton_samples`` answers to each of m skeleton
   prompts (EDFL's builder), all requested concurrently through the Sampler.
2. Greedy bidirectional-entailment clustering of the full answers; masses by count share
   and by length-normalised sequence probability; semantic entropy of both; P*.
3. Skeleton answers projected onto those clusters with an OTHER bucket; S_k(top).
4. Budget with EDFL's arithmetic: q_lo, Δ̄ (1-D log ratio or multi-class KL), B2T, ISR.
5. ANSWER iff P* >= 1 - h* (posterior-dominance latch), the top meaning is not a refusal,
   and either the prior is already sufficient (q_lo >= 1 - h*) or ISR >= thr and
   Δ̄ >= B2T + margin.

``sample`` and ``analyse`` are separate so that benchmarks can sample once and analyse
the same draws with every backend.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.bounds import PromptBounds, bound_messages
from detectors.edfl import budget
from detectors.edfl.skeletons import build_skeletons, message_text
from detectors.offload import CpuLimiter
from detectors.sampling import Message, Sample, Sampler, TokenLogprob
from detectors.semantic.backend import Entailment
from detectors.semantic.clustering import (
    assign_to_clusters,
    cluster_answers,
    cluster_is_refusal,
    count_masses,
    medoid,
    probability_masses,
    semantic_entropy,
)
from detectors.semantic.config import SemanticConfig
from detectors.semantic.entailment import EquivalenceJudge, make_entailment
from detectors.semantic.judge import JudgeCache
from detectors.semantic.prior import (
    delta_bar_kl,
    skeleton_counts,
    smoothed_distributions,
    top_meaning_priors,
)
from detectors.semantic.result import GateCost, MeaningCluster, SemanticResult
from detectors.verdict import Verdict


@dataclass(frozen=True)
class SampleSet:
    """Everything one decision drew from the upstream."""

    question: str  # the last user turn's text: what entailment is conditioned on
    full: tuple[Sample, ...]  # M answers to the full prompt
    skeletons: tuple[tuple[Sample, ...], ...]  # per skeleton, its answers
    sampler_calls: int
    seconds: float

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "full": [sample_to_dict(s) for s in self.full],
            "skeletons": [[sample_to_dict(s) for s in row] for row in self.skeletons],
            "sampler_calls": self.sampler_calls,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SampleSet:
        return cls(
            question=data["question"],
            full=tuple(sample_from_dict(s) for s in data["full"]),
            skeletons=tuple(tuple(sample_from_dict(s) for s in row) for row in data["skeletons"]),
            sampler_calls=int(data["sampler_calls"]),
            seconds=float(data["seconds"]),
        )


def sample_seeds(first: int | None, M: int, per_skeleton: int, m: int) -> list[int | None]:
    """The first seed of each sampler call: the full prompt's M answers take seeds
    first..first+M-1 (the sampler gives answer i seed+i), skeleton k's the next
    ``per_skeleton``, so no two answers share one. None everywhere when unseeded."""
    if first is None:
        return [None] * (1 + m)
    return [first] + [first + M + k * per_skeleton for k in range(m)]


def sample_to_dict(sample: Sample) -> dict:
    """A sample as JSON (token alternatives dropped; the masses need only chosen logprobs)."""
    tokens = None if sample.tokens is None else [[t.token, t.logprob] for t in sample.tokens]
    return {"text": sample.text, "tokens": tokens, "finish_reason": sample.finish_reason,
            "completion_tokens": sample.completion_tokens}


def sample_from_dict(data: dict) -> Sample:
    tokens = data.get("tokens")
    return Sample(
        text=data["text"],
        tokens=None if tokens is None else tuple(TokenLogprob(t, lp) for t, lp in tokens),
        finish_reason=data.get("finish_reason"),
        completion_tokens=int(data.get("completion_tokens") or 0),
    )


def last_user_text(messages: Sequence[Message]) -> str:
    users = [m for m in messages if m.get("role") == "user"]
    return message_text(users[-1]).strip() if users else ""


def semantic_verdict(p_star: float, q_lo: float, delta: float, b2t: float, isr: float,
                     refusal: bool, config: SemanticConfig,
                     ) -> tuple[Verdict, tuple[str, ...], bool]:
    """The gate rule; returns (verdict, reasons to abstain, prior sufficient)."""
    target = 1.0 - config.h_star
    prior_sufficient = q_lo >= target and p_star >= target
    reasons = []
    if p_star < target:
        reasons.append("posterior_not_dominant")
    if refusal:
        reasons.append("top_meaning_refusal")
    if not prior_sufficient:
        if isr < config.isr_threshold:
            reasons.append("isr_below_threshold")
        if delta < b2t + config.margin:
            reasons.append("budget_below_b2t")
    verdict = Verdict.ABSTAIN if reasons else Verdict.ANSWER
    return verdict, tuple(reasons), prior_sufficient


def normalised_entropy(masses: np.ndarray, n_answers: int) -> float:
    """risk = H_sem / log M, in [0, 1] (log M is the entropy of M distinct meanings)."""
    if n_answers < 2:
        return 0.0
    return min(semantic_entropy(masses) / math.log(n_answers), 1.0)


async def project_skeletons(draws: SampleSet, representatives: list[str],
                            judge: EquivalenceJudge) -> np.ndarray:
    """Skeleton answers onto the full prompt's clusters, OTHER kept: counts (m, K+1).
    All skeletons' answers go to the judge in one batch."""
    rows = [[s.text.strip() for s in row] for row in draws.skeletons]
    flat = await assign_to_clusters([t for row in rows for t in row], representatives, judge)
    assignments, offset = [], 0
    for row in rows:
        assignments.append(flat[offset:offset + len(row)])
        offset += len(row)
    return skeleton_counts(assignments, len(representatives))


def decision_cost(draws: SampleSet, judge: EquivalenceJudge, seconds: float) -> GateCost:
    """Sampler calls, answers, tokens and time of one decision (judge requests included)."""
    answers = [*draws.full, *(s for row in draws.skeletons for s in row)]
    judge_calls = judge.cost.backend_calls if judge.backend.name == "llm" else 0
    return GateCost(
        sampler_calls=draws.sampler_calls + judge_calls,
        samples=len(answers),
        completion_tokens=sum(s.completion_tokens for s in answers) + judge.cost.tokens,
        sampling_seconds=draws.seconds,
        analysis_seconds=seconds,
        entailment=judge.cost.to_dict(),
    )


class SemanticGate:
    """One per profile: holds the config, the (lazily built) backend and the judge cache."""

    def __init__(self, config: SemanticConfig | None = None, backend: Entailment | None = None,
                 *, cpu: CpuLimiter | None = None, bounds: PromptBounds = PromptBounds()):
        self.config = config or SemanticConfig()
        self._backend = backend
        self.cpu = cpu or CpuLimiter()  # skeleton masking runs in a worker thread
        self.bounds = bounds  # skeletons are built from a bounded view of the prompt
        self._judge_cache = JudgeCache()

    def backend_for(self, sampler: Sampler) -> Entailment:
        """The injected backend, else one built from the config (llm: bound to ``sampler``)."""
        cfg = self.config
        if self._backend is not None:
            return self._backend
        if cfg.backend == "llm":
            return make_entailment("llm", sampler=sampler, cache=self._judge_cache)
        options = {
            "lexical": {"f1_threshold": cfg.lexical_f1_threshold},
            "embedding": {"threshold": cfg.embedding_threshold,
                          "condition_on_question": cfg.embedding_condition_on_question},
            "nli": {"model_path": cfg.nli_model_path},
        }[cfg.backend]
        self._backend = make_entailment(cfg.backend, **options)
        return self._backend

    async def run(self, messages: Sequence[Message], sampler: Sampler,
                  original_answer: str | None = None) -> SemanticResult:
        draws = await self.sample(messages, sampler)
        return await self.analyse(draws, self.backend_for(sampler), original_answer)

    async def sample(self, messages: Sequence[Message], sampler: Sampler) -> SampleSet:
        """M full-prompt answers and the skeletons' answers, all requested concurrently."""
        cfg = self.config
        view = bound_messages(messages, self.bounds).messages  # what the judges read too
        skeletons = await self.cpu.run(build_skeletons, view, cfg.skeleton_config())
        options = {"temperature": cfg.temperature, "top_p": cfg.top_p,
                   "max_tokens": cfg.max_tokens, "top_logprobs": cfg.top_logprobs}
        seeds = sample_seeds(cfg.sample_seed, cfg.M, cfg.skeleton_samples, len(skeletons))
        start = time.perf_counter()
        full, *per_skeleton = await asyncio.gather(
            sampler(messages, n=cfg.M, seed=seeds[0], **options),
            *(sampler(s.messages, n=cfg.skeleton_samples, seed=seed, **options)
              for s, seed in zip(skeletons, seeds[1:], strict=True)),
        )
        return SampleSet(
            question=last_user_text(view),
            full=tuple(full),
            skeletons=tuple(tuple(row) for row in per_skeleton),
            sampler_calls=1 + len(skeletons),
            seconds=time.perf_counter() - start,
        )

    async def analyse(self, draws: SampleSet, backend: Entailment,
                      original_answer: str | None = None) -> SemanticResult:
        """Clusters, entropy, priors, budget and verdict for already drawn samples."""
        cfg = self.config
        if not draws.full:
            raise ValueError("the semantic gate needs at least one full-prompt answer")
        start = time.perf_counter()
        judge = EquivalenceJudge(backend, draws.question, short_circuit=cfg.short_circuit)
        texts = [s.text.strip() for s in draws.full]
        groups = await cluster_answers(texts, judge)
        count = count_masses(groups, len(texts))  # (K,)
        prob = probability_masses(groups, draws.full)  # (K,) or None
        masses = prob if cfg.mass == "prob" and prob is not None else count
        top, p_star = int(np.argmax(masses)), float(np.max(masses))
        reps = [texts[g[0]] for g in groups]
        counts = await project_skeletons(draws, reps, judge)  # (m, K+1)
        dists = smoothed_distributions(counts, cfg.prior_alpha)  # (m, K+1)
        top_priors = top_meaning_priors(counts, top)
        refusals = [cluster_is_refusal([texts[i] for i in g]) for g in groups]
        chosen, in_top = await self._choose(texts, groups[top], judge, original_answer)
        numbers = self._budget(p_star, masses, dists, top_priors)
        verdict, reasons, sufficient = semantic_verdict(
            p_star, numbers["q_lo"], numbers["delta_bar"], numbers["b2t"], numbers["isr"],
            refusals[top], cfg,
        )
        clusters = tuple(
            MeaningCluster(reps[j], tuple(g), float(count[j]),
                           None if prob is None else float(prob[j]),
                           float(dists[:, j].mean()), refusals[j])
            for j, g in enumerate(groups)
        )
        return SemanticResult(
            verdict=verdict, risk=normalised_entropy(masses, len(texts)), reasons=reasons,
            chosen_answer=chosen, original_in_top=in_top, clusters=clusters, top=top,
            p_star=p_star, entropy_count=semantic_entropy(count),
            entropy_prob=None if prob is None else semantic_entropy(prob),
            prior_other=float(dists[:, -1].mean()), top_priors=tuple(top_priors),
            delta_mode=cfg.delta_mode, prior_sufficient=sufficient,
            top_is_refusal=refusals[top], backend=backend.name, answers=tuple(texts),
            cost=decision_cost(draws, judge, time.perf_counter() - start), **numbers,
        )

    def _budget(self, p_star: float, masses: np.ndarray, dists: np.ndarray,
                top_priors: list[float]) -> dict[str, float]:
        """q_avg, q_lo, Δ̄, B2T, ISR and the RoH bound (EDFL's functions, semantic inputs)."""
        cfg = self.config
        q_lo = budget.q_lo(top_priors, cfg.q_floor)
        q_avg = budget.q_avg(top_priors)
        if cfg.delta_mode == "kl":
            delta = delta_bar_kl(masses, dists, cfg.clip)
        else:
            delta = budget.delta_bar(p_star, top_priors, cfg.clip, cfg.q_floor)
        b2t = budget.bits_to_trust(q_lo, cfg.h_star)
        return {
            "q_avg": q_avg, "q_lo": q_lo, "delta_bar": delta, "b2t": b2t,
            "isr": budget.information_sufficiency_ratio(delta, b2t),
            "roh_bound": budget.roh_upper_bound(delta, q_avg),
        }

    async def _choose(self, texts: list[str], members: list[int], judge: EquivalenceJudge,
                      original: str | None) -> tuple[str, bool | None]:
        """The original answer when it means the top meaning, else the top cluster's medoid."""
        in_top = None
        if original is not None:
            (in_top,) = await judge.equivalent([(original.strip(), texts[members[0]])])
            if in_top:
                return original, True
        candidates = [texts[i] for i in members]
        return candidates[medoid(candidates, judge.question)], in_top
