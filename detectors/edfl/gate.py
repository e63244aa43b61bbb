"""The EDFL skeleton gate: skeletons -> P and S_k (concurrently) -> Δ̄, B2T, ISR -> verdict.

    gate = EdflGate(EdflConfig(h_star=0.05))
    result = await gate.run(messages, sampler)     # EdflResult
    result.verdict, result.risk, result.to_dict()

Cost with a logprob-giving upstream: at most 1 + m calls of ``decision_max_tokens`` (2)
output tokens, all in flight together (``asyncio.gather``), fewer when skeletons coincide
or estimates are cached. Upstream failures propagate; the route's fail mode decides.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from detectors.bounds import PromptBounds, bound_messages
from detectors.edfl import budget
from detectors.edfl.config import EdflConfig
from detectors.edfl.decision import (
    DecisionEstimate,
    decision_messages,
    estimate_decision,
    prompt_key,
)
from detectors.edfl.skeletons import build_skeletons, resolve_mode
from detectors.offload import CpuLimiter
from detectors.sampling import Message, Sampler
from detectors.verdict import Verdict


class LruCache:
    """A small bounded mapping that forgets the least recently used entry first."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, DecisionEstimate] = OrderedDict()

    def get(self, key: Hashable) -> DecisionEstimate | None:
        if key not in self._data:
            return None
        self._data.move_to_end(key)
        return self._data[key]

    def put(self, key: Hashable, value: DecisionEstimate) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class EdflResult:
    """What the gate decided and every number behind it (nats; probabilities of ANSWER)."""

    verdict: Verdict
    risk: float  # RoH upper bound 1 − p_max(Δ̄, q_avg), in [0, 1]
    reason: str  # why, in a few words
    posterior: float  # P = P(answer | full prompt)
    priors: tuple[float, ...]  # S_k = P(answer | skeleton k)
    q_avg: float
    q_lo: float
    delta_bar: float  # Δ̄
    b2t: float  # bits-to-trust (nats)
    isr: float  # Δ̄ / B2T, inf when B2T = 0
    roh: float  # same as risk
    prior_sufficient: bool  # q_lo ≥ 1 − h*, so B2T = 0
    h_star: float
    mode: str  # evidence | closed_book
    skeletons: tuple[str, ...]  # skeleton texts, for the audit log
    methods: tuple[str, ...]  # estimator per prompt, full first: logprobs | sampling
    label_masses: tuple[float | None, ...]  # logprob label mass per prompt, full first
    sampler_calls: int  # sampler invocations made by this run (0 for cache hits)
    samples: int  # completions requested (= upstream calls when it ignores n)
    prompt_tokens: int
    completion_tokens: int
    cache_hits: int  # prompts served without a new call (cache, duplicate skeleton)
    wall_s: float

    @property
    def decision(self) -> str:
        return self.verdict.value

    @property
    def label_mass(self) -> float | None:
        """Label mass of the full prompt's logprob call (None: no logprobs came back)."""
        return self.label_masses[0]

    def to_dict(self) -> dict:
        """JSON-safe metadata (infinite ISR becomes None, with ``prior_sufficient`` true)."""
        return {
            "detector": "edfl",
            "verdict": self.verdict.value,
            "risk": round(self.risk, 6),
            "reason": self.reason,
            "P": self.posterior,
            "S": list(self.priors),
            "q_avg": self.q_avg,
            "q_lo": self.q_lo,
            "delta_bar": self.delta_bar,
            "b2t": self.b2t,
            "isr": _finite(self.isr),
            "roh": self.roh,
            "prior_sufficient": self.prior_sufficient,
            "h_star": self.h_star,
            "mode": self.mode,
            "skeletons": list(self.skeletons),
            "methods": list(self.methods),
            "label_masses": list(self.label_masses),
            "sampler_calls": self.sampler_calls,
            "samples": self.samples,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cache_hits": self.cache_hits,
            "wall_s": round(self.wall_s, 6),
        }


def _reason(p: float, prior_sufficient: bool, isr: float, dbar: float, b2t: float, cfg) -> str:
    if p <= 0.5:
        return f"full prompt favours refusing (P={p:.3f})"
    if prior_sufficient:
        return "prior sufficient (q_lo >= 1-h*)"
    if isr < cfg.isr_threshold:
        return f"ISR {isr:.3f} < {cfg.isr_threshold}"
    if dbar < b2t + cfg.margin:
        return f"delta_bar {dbar:.3f} < B2T + margin {b2t + cfg.margin:.3f}"
    return "information sufficient"


def _skeletons_and_mode(messages: Sequence[Message], config) -> tuple[list, str]:
    """The CPU part of a run, for a worker thread."""
    return build_skeletons(messages, config), resolve_mode(messages, config)


class EdflGate:
    """The classical (binary-event) EDFL head. Owns a bounded LRU of decision estimates.

    The gate judges a bounded view of the conversation (``bounds``, see
    :mod:`detectors.bounds`), and builds its skeletons in a worker thread (``cpu``), so a
    huge prompt neither stalls the event loop nor costs seconds of masking.
    """

    def __init__(self, config: EdflConfig | None = None, *, cpu: CpuLimiter | None = None,
                 bounds: PromptBounds = PromptBounds()):
        self.config = config or EdflConfig()
        self.cpu = cpu or CpuLimiter()
        self.bounds = bounds
        self.cache = LruCache(self.config.cache_size)
        self._no_logprobs: set[Hashable] = set()  # models seen answering without logprobs
        self._inflight: dict[Hashable, asyncio.Future] = {}

    async def run(
        self, messages: Sequence[Message], sampler: Sampler, *, model: str | None = None
    ) -> EdflResult:
        """Decide ANSWER / ABSTAIN for ``messages`` (OpenAI chat messages).

        ``model`` keys the cache; by default ``sampler.model`` when it has one, else the
        sampler object itself.
        """
        cfg = self.config
        started = time.perf_counter()
        model_key = model or getattr(sampler, "model", None) or sampler
        view = bound_messages(messages, self.bounds)
        skeletons, mode = await self.cpu.run(_skeletons_and_mode, view.messages,
                                             cfg.skeleton_config())
        prompts = [list(view.messages)] + [s.messages for s in skeletons]
        estimates, costs, hits = await self._estimate_all(prompts, sampler, model_key)
        return self._result(
            estimates, costs, hits, skeletons, mode, time.perf_counter() - started,
        )  # fmt: skip

    async def _estimate_all(self, prompts, sampler, model_key):
        """Estimates for every prompt; unique uncached prompts are asked concurrently.

        Returns (estimates in prompt order, the estimates that cost calls, cache hits).
        """
        keys = [(model_key, prompt_key(decision_messages(p, self.config.prompt_style)))
                for p in prompts]  # fmt: skip
        unique = list(dict.fromkeys(keys))
        cached = {k: self.cache.get(k) for k in unique}
        todo = [k for k in unique if cached[k] is None]
        first_of = {k: prompts[keys.index(k)] for k in todo}
        fresh = await asyncio.gather(*(self._estimate(k, first_of[k], sampler) for k in todo))
        by_key = {k: v for k, v in cached.items() if v is not None}
        by_key.update({k: estimate for k, (estimate, _) in zip(todo, fresh, strict=True)})
        paid = [estimate for estimate, own in fresh if own]
        return [by_key[k] for k in keys], paid, len(prompts) - len(paid)

    async def _estimate(self, key, prompt, sampler) -> tuple[DecisionEstimate, bool]:
        """One estimate, shared with concurrent runs asking the same key.

        Returns the estimate and whether this call paid for it (False: another run did).
        """
        if key in self._inflight:
            return await asyncio.shield(self._inflight[key]), False
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            model_key = key[0]
            estimate, had_logprobs = await estimate_decision(
                decision_messages(prompt, self.config.prompt_style), sampler, self.config,
                use_logprobs=model_key not in self._no_logprobs,
            )  # fmt: skip
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark it retrieved: only waiting runs re-raise it
            raise
        finally:
            del self._inflight[key]
        if not had_logprobs and estimate.method == "sampling":
            self._no_logprobs.add(model_key)
        self.cache.put(key, estimate)
        future.set_result(estimate)
        return estimate, True

    def _result(self, estimates, costs, hits, skeletons, mode, wall_s) -> EdflResult:
        cfg = self.config
        p = estimates[0].p_answer
        priors = tuple(e.p_answer for e in estimates[1:])
        q_avg = budget.q_avg(priors)
        q_lo = budget.q_lo(priors, cfg.q_floor)
        dbar = budget.delta_bar(p, priors, cfg.clip, cfg.q_floor)
        b2t = budget.bits_to_trust(q_lo, cfg.h_star)
        isr = budget.information_sufficiency_ratio(dbar, b2t)
        roh = budget.roh_upper_bound(dbar, q_avg)
        answer = budget.should_answer(
            p, dbar, b2t, isr, isr_threshold=cfg.isr_threshold, margin=cfg.margin
        )
        return EdflResult(
            verdict=Verdict.ANSWER if answer else Verdict.ABSTAIN,
            risk=roh, reason=_reason(p, b2t == 0.0, isr, dbar, b2t, cfg),
            posterior=p, priors=priors, q_avg=q_avg, q_lo=q_lo, delta_bar=dbar, b2t=b2t,
            isr=isr, roh=roh, prior_sufficient=b2t == 0.0, h_star=cfg.h_star, mode=mode,
            skeletons=tuple(s.text for s in skeletons),
            methods=tuple(e.method for e in estimates),
            label_masses=tuple(e.logprob_mass for e in estimates),
            sampler_calls=sum(e.calls for e in costs), samples=sum(e.samples for e in costs),
            prompt_tokens=sum(e.prompt_tokens for e in costs),
            completion_tokens=sum(e.completion_tokens for e in costs),
            cache_hits=hits, wall_s=wall_s,
        )  # fmt: skip
