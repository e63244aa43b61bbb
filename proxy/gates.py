"""Policy-driven gating: the route's profile decides which detectors judge an answer.

    begin(request)  match route -> profile, apply header overrides and the hard rule,
                    start the prompt-only work at once (EDFL decisions, semantic samples)
                    so it runs concurrently with the answer call
    judge(answers)  HALT on the answer's logprobs, finish EDFL and the semantic analysis,
                    policies.decide() -> ANSWER / ABSTAIN, metrics, audit record

Detectors see plain data and an :class:`UpstreamSampler` over the request's own upstream;
their long-lived state (HALT weights, gate caches, the embedding model) lives in
:class:`DetectorSuite`, created once per app.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from detectors.bounds import PromptBounds, bound_text
from detectors.combiner import answer_features
from detectors.offload import CpuLimiter
from detectors.sampling import TokenLogprob
from detectors.verdict import Verdict
from policies import (
    Decision,
    MissingLogprobs,
    OverrideError,
    Policy,
    PolicyStore,
    Profile,
    Route,
    RouteNotAllowed,
    RoutingError,
    apply_hard_rule,
    apply_overrides,
    decide,
    prompt_text,
    resolve_route,
)
from policies.detector_configs import (
    edfl_config,
    halt_threshold,
    sample_instruction,
    semantic_config,
)
from policies.schema import CombineConfig, HaltKnobs, progressive_problems
from proxy.audit import AuditLog, PendingAudit, pending_audit
from proxy.chat.gating import Answer, GateOutcome, ProgressivePlan, RequestContext
from proxy.chat.schemas import ChatCompletionRequest
from proxy.errors import InvalidRequest, PermissionDenied
from proxy.metrics import Metrics
from proxy.registry import UpstreamRegistry
from proxy.sampler import UpstreamSampler
from proxy.store.ids import new_response_id
from proxy.tracing import detector as traced_detector
from proxy.tracing import record_decision

log = logging.getLogger("hallgate.gates")


class HaltScoring(Protocol):
    async def score(self, tokens: tuple[TokenLogprob, ...]) -> Any: ...


def load_halt_scorer() -> HaltScoring | None:
    """The committed HALT checkpoint for the embedded model, or None if HALT is absent."""
    try:
        from detectors.halt import HaltScorer

        return HaltScorer.load_default()
    except (ImportError, FileNotFoundError) as exc:
        log.warning("HALT unavailable (%s); profiles that enable it will be rejected", exc)
        return None


class DetectorSuite:
    """The detectors this gateway offers, loaded once; gates cached per config."""

    def __init__(self, halt: HaltScoring | None, cpu: CpuLimiter | None = None):
        self.halt = halt
        self.cpu = cpu or CpuLimiter(limit=2)  # detector CPU work, off the event loop
        self._edfl: dict[Any, Any] = {}
        self._semantic: dict[Any, Any] = {}

    def available(self) -> tuple[str, ...]:
        return ("halt", "edfl", "semantic") if self.halt else ("edfl", "semantic")

    def edfl_gate(self, profile: Profile):
        from detectors.edfl.gate import EdflGate

        config = edfl_config(profile)
        if config not in self._edfl:
            self._edfl[config] = EdflGate(config, cpu=self.cpu)
        return self._edfl[config]

    def semantic_gate(self, profile: Profile):
        from detectors.semantic import SemanticGate

        config = semantic_config(profile)
        if config not in self._semantic:
            self._semantic[config] = SemanticGate(config, cpu=self.cpu)
        return self._semantic[config]


def decision_headers(decision: Decision) -> dict[str, str]:
    """``x-hallgate-decision`` is what the client got (answer or abstain); the judgement
    and risk are added as ``x-hallgate-verdict``/``-risk`` unless the action is shadow."""
    headers = decision.response_headers()
    verdict = headers.pop("x-hallgate-decision")
    headers["x-hallgate-decision"] = headers.pop("x-hallgate-returned")
    if decision.shown_to_client:
        headers["x-hallgate-verdict"] = verdict
    else:
        headers.pop("x-hallgate-risk", None)
    return headers


def resolve(policy: Policy, ctx: RequestContext, model: str) -> tuple[Route, Profile]:
    """The request's route and profile; a route it names but cannot have is an error
    (unknown: 400, not allowed for its key: 403), never silently the default route."""
    try:
        chosen = resolve_route(policy, path=ctx.path, route_header=ctx.route_header,
                               model=model, key_name=ctx.key_name)
    except RouteNotAllowed as exc:
        raise PermissionDenied(str(exc), param=exc.param, code="route_not_allowed") from None
    except RoutingError as exc:
        raise InvalidRequest(str(exc), param=exc.param, code="unknown_route") from None
    return chosen.route, chosen.profile


ROUTE_CACHE_SIZE = 1024  # distinct (path, route header, model, key) resolutions kept


class PolicyGatekeeper:
    def __init__(self, store: PolicyStore, suite: DetectorSuite, registry: UpstreamRegistry,
                 metrics: Metrics, audit: AuditLog | None = None):
        self.store = store
        self.suite = suite
        self.registry = registry
        self.metrics = metrics
        self.audit = audit
        self.exchanges = None  # proxy.store.ExchangeStore when the store is on (app.py)
        # the route resolutions of the current policy: a request pays a dict lookup, not
        # the matching (about 30 µs on a cold cache at concurrency 1, bench/overhead.py)
        self._routes: tuple[Policy | None, dict] = (None, {})

    def _resolve(self, policy: Policy, ctx: RequestContext, model: str) -> tuple[Route, Profile]:
        cached_policy, resolved = self._routes
        if cached_policy is not policy:  # a reload: start over
            resolved = {}
            self._routes = (policy, resolved)
        key = (ctx.path, ctx.route_header, model, ctx.key_name)
        found = resolved.get(key)
        if found is None:
            found = resolve(policy, ctx, model)  # errors are raised, never cached
            if len(resolved) < ROUTE_CACHE_SIZE:
                resolved[key] = found
        return found

    def begin(self, request: ChatCompletionRequest, ctx: RequestContext,
              model: str) -> PolicySession:
        policy = self.store.policy  # read once: a reload mid-request does not affect it
        route, profile = self._resolve(policy, ctx, model)
        if ctx.override_headers:
            try:
                profile = apply_overrides(profile, ctx.override_headers,
                                          available_detectors=self.suite.available())
            except OverrideError as exc:
                raise InvalidRequest(str(exc), param=exc.header,
                                     code="override_refused") from None
        messages = request.raw_messages()
        escalation = None
        if profile.escalate_factual_to is not None:  # only such routes read the prompt
            # The hard rule reads a bounded text: its regexes take 0.2 s on 1 MB.
            text = bound_text(prompt_text(messages), PromptBounds().max_chars)
            profile, escalation = apply_hard_rule(policy, profile, text)
        sampler = UpstreamSampler(self.registry.get(model))
        return PolicySession(self, route.name, profile, escalation, messages, sampler, ctx,
                             model)


class CutFirst(Exception):
    """A prompt-only gate that had not answered when the stream was cut."""


async def _result_or_error(work: Awaitable[Any]) -> Any:
    """The work's result, or its exception as the result (judged later by the fail mode)."""
    try:
        return await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return exc


class PolicySession:
    def __init__(self, keeper: PolicyGatekeeper, route: str, profile: Profile, escalation,
                 messages: list[dict], sampler: UpstreamSampler, ctx: RequestContext,
                 model: str):
        self.keeper, self.route, self.profile = keeper, route, profile
        self.escalation, self.messages, self.sampler = escalation, messages, sampler
        self.ctx, self.model = ctx, model
        self.response_id = new_response_id()  # the client's id for this answer
        self.enabled = profile.detectors.enabled()
        # judge() reads no answer when every detector is off, so such a route asks the
        # upstream only for what the client asked for, and streams it as it comes:
        # holding back an answer that nothing judges would only delay it
        self.reads_logprobs = bool(self.enabled)
        self.streaming_mode = profile.streaming if self.enabled else "passthrough"
        self.headers = {"x-hallgate-route": route, "x-hallgate-profile": profile.name}
        if self.streaming_mode in ("passthrough", "progressive"):
            # see the stream's last chunk; with nothing to judge the answer is the decision
            self.headers["x-hallgate-decision"] = "deferred" if self.enabled else "answer"
        if keeper.audit is not None:  # a failure before the decision is audited too
            pending_audit.set(PendingAudit(keeper.audit, ctx.request_id, model, messages,
                                           route, profile.name, ctx.key_name))
        self._tasks: dict[str, asyncio.Task] = {}
        self._start_prompt_only_work()

    def _start_prompt_only_work(self) -> None:
        suite = self.keeper.suite
        if "edfl" in self.enabled:
            gate = suite.edfl_gate(self.profile)
            self._tasks["edfl"] = asyncio.ensure_future(
                self._timed("edfl", gate.run(self.messages, self.sampler, model=self.model)))
        if "semantic" in self.enabled:
            gate = suite.semantic_gate(self.profile)
            instruction = sample_instruction(
                self.profile, bound_text(prompt_text(self.messages), PromptBounds().max_chars))
            sample_messages = ([{"role": "system", "content": instruction}, *self.messages]
                               if instruction else self.messages)
            self._tasks["semantic"] = asyncio.ensure_future(
                _result_or_error(gate.sample(sample_messages, self.sampler)))

    async def _timed(self, name: str, work: Awaitable[Any]) -> Any:
        """Run one detector; its exception becomes its result (the fail mode decides)."""
        start = time.perf_counter()
        work = traced_detector(name, work)  # a child span when tracing is on
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("detector %s failed: %r", name, exc)
            self.keeper.metrics.detector_errors.labels(name).inc()
            return exc
        finally:
            self.keeper.metrics.detector_seconds.labels(name).observe(
                time.perf_counter() - start)

    async def judge(self, answers: list[Answer]) -> GateOutcome:
        """Judge the first choice (the answer a client reads) under the profile."""
        if not self.enabled:
            return self._outcome(None, answers)
        primary = answers[0] if answers else Answer(0, "", None)
        results: dict[str, Any] = {}
        if "halt" in self.enabled or (primary.tokens and self.keeper.suite.halt):
            # HALT is cheap: it always scores an answer with logprobs; decide() counts it
            # only where the profile enables it, and reports it otherwise.
            results["halt"] = await self._halt(primary)
        if "edfl" in self.enabled:
            results["edfl"] = await self._tasks.pop("edfl")
        if "semantic" in self.enabled:
            results["semantic"] = await self._semantic(primary)
        decision = decide(self.profile, results, route=self.route, escalation=self.escalation,
                          answer=answer_features(primary.tokens))
        self._record(decision, primary)
        return self._outcome(decision, answers, results.get("semantic"))

    def _record(self, decision: Decision, answer: Answer | None = None) -> None:
        """Metrics, tracing events, the audit record and the store's sample of a decision."""
        self.keeper.metrics.decisions.labels(decision.profile, decision.verdict.value).inc()
        record_decision(decision)  # gen_ai.evaluation.result events when tracing is on
        if self.keeper.audit is not None:
            pending_audit.set(None)
            self.keeper.audit.record(request_id=self.ctx.request_id, model=self.model,
                                     messages=self.messages, decision=decision.to_dict(),
                                     usage=self._gate_usage(), key_name=self.ctx.key_name)
        if self.keeper.exchanges is not None:  # queued, never awaited
            self.keeper.exchanges.offer(self, decision, answer)

    # --- progressive streaming (proxy/chat/progressive.py drives these) --------------

    def progressive_plan(self) -> ProgressivePlan | None:
        """The release rules of a progressive stream; None when this gateway has no HALT
        or the profile cannot stream progressively (policy check refuses such profiles;
        this guards header overrides and hard-rule targets)."""
        halt = self.keeper.suite.halt
        if (self.profile.streaming != "progressive" or halt is None
                or progressive_problems(self.profile)):
            return None
        knobs = self.profile.progressive
        threshold = knobs.threshold
        if threshold is None:  # the checkpoint's prefix threshold (bench/halt_prefix.py)
            threshold = getattr(halt, "prefix_threshold", None)
        if threshold is None:  # a scorer without one: the full-answer threshold
            threshold = halt_threshold(self.profile) or getattr(halt, "threshold", 0.5)
        return ProgressivePlan(knobs.holdback_tokens, knobs.rescore_every, float(threshold),
                               cut=self.profile.action == "abstain")

    async def prompt_verdict(self) -> GateOutcome | None:
        """Wait for EDFL (prompt-only, started in begin); the abstention when it decides
        the answer on its own (combine `any`, action abstain), else None."""
        task = self._tasks.get("edfl")
        if task is None:
            return None
        result = await asyncio.shield(task)  # judge() awaits the same task later
        if self.profile.combine.mode != "any" or self.profile.action != "abstain":
            return None
        without_halt = self.profile.detectors.model_copy(update={"halt": HaltKnobs(
            enabled=False)})
        decision = decide(self.profile.model_copy(update={"detectors": without_halt}),
                          {"edfl": result}, route=self.route, escalation=self.escalation)
        if not decision.abstained:
            return None
        self._tasks.pop("edfl", None)
        self._record(decision)
        return self._outcome(decision, [])

    async def score_prefix(self, tokens: list[dict]) -> Any | None:
        """HALT on an answer prefix; None when it cannot be scored (the stream goes on and
        the whole answer is judged at its end)."""
        start = time.perf_counter()
        try:
            return await self.keeper.suite.halt.score(tokens)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("prefix scoring failed: %r", exc)
            self.keeper.metrics.detector_errors.labels("halt_prefix").inc()
            return None
        finally:  # one observation per check, beside the full answer's "halt"
            self.keeper.metrics.detector_seconds.labels("halt_prefix").observe(
                time.perf_counter() - start)

    async def judge_cut(self, answer: Answer, halt_result: Any,
                        threshold: float) -> GateOutcome:
        """The decision of a stream cut at a prefix: HALT's prefix verdict decides (combine
        `any` over it); EDFL is reported when it has answered, else as cut short."""
        results: dict[str, Any] = {"halt": dataclasses.replace(
            halt_result, verdict=Verdict.ABSTAIN, threshold=threshold)}
        task = self._tasks.pop("edfl", None)
        if task is not None:
            results["edfl"] = (task.result() if task.done() and not task.cancelled()
                               else CutFirst("the stream was cut before EDFL answered"))
            task.cancel()
        profile = self.profile.model_copy(update={"combine": CombineConfig()})
        decision = decide(profile, results, route=self.route, escalation=self.escalation,
                          answer=answer_features(answer.tokens))
        self._record(decision, answer)
        return self._outcome(decision, [answer])

    def _gate_usage(self) -> dict:
        """What the gates themselves cost upstream (the answer's own usage is separate)."""
        stats = self.sampler.stats
        return {"gate_calls": stats.calls, "gate_prompt_tokens": stats.prompt_tokens,
                "gate_completion_tokens": stats.completion_tokens}

    async def _halt(self, answer: Answer) -> Any:
        if not answer.tokens:
            return MissingLogprobs()
        result = await self._timed("halt", self.keeper.suite.halt.score(answer.tokens))
        threshold = halt_threshold(self.profile)  # None: the checkpoint's own threshold
        if threshold is None or isinstance(result, Exception):
            return result
        verdict = Verdict.ABSTAIN if result.risk >= threshold else Verdict.ANSWER
        return dataclasses.replace(result, verdict=verdict, threshold=threshold)

    async def _semantic(self, answer: Answer) -> Any:
        draws = await self._tasks.pop("semantic")
        gate = self.keeper.suite.semantic_gate(self.profile)

        async def analyse():
            if isinstance(draws, Exception):
                raise draws
            return await gate.analyse(draws, gate.backend_for(self.sampler), answer.text)

        return await self._timed("semantic", analyse())

    def _outcome(self, decision: Decision | None, answers: list[Answer],
                 semantic: Any = None) -> GateOutcome:
        if decision is None:
            return GateOutcome(headers={"x-hallgate-decision": Verdict.ANSWER.value})
        headers = decision_headers(decision)
        metadata = decision.to_dict(detail=False) if decision.shown_to_client else None
        if decision.abstained:
            return GateOutcome(abstain=True, replacement=self.profile.abstention_text,
                               metadata=metadata, headers=headers)
        chosen = getattr(semantic, "chosen_answer", None)
        if decision.action == "abstain" and chosen and answers and chosen != answers[0].text:
            return GateOutcome(replacement=chosen, metadata=metadata, headers=headers)
        return GateOutcome(metadata=metadata, headers=headers)

    async def aclose(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
