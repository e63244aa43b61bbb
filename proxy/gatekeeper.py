"""The gate orchestrator: the route's profile decides which registered detectors judge an
answer. It names no detector; each one declares what it needs (detectors/protocol.py).

    begin(request)  route -> profile (overrides, hard rule); each enabled detector bound to
                    the profile's settings; prompt-time work (EDFL's decisions, the semantic
                    gate's samples) started at once, concurrently with the answer call
    judge(answers)  every enabled detector's judgement (and the `report_always` ones when
                    the answer has what they read), policies.decide() -> the decision;
                    recorded by proxy/decision_records.py
    feed_prefix     progressive streams: the profile's prefix judge, fed the new tokens

Each detector samples through its own :class:`UpstreamSampler` over the request's
upstream, so its judgement reports what it cost (calls, tokens, ms).

The model's calibration bundle (calibration/) is read once per request in begin(): its
plug-ins (HALT on its weights) replace the gateway's, its thresholds (or, under the
profile's `target_risk`, its certified operating points) re-read every judgement whose
threshold the profile does not set, its histograms feed the drift monitor, and the
profile's `uncalibrated` decides a request without one (calibration/binding.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from calibration.binding import CalibrationUse
from calibration.bundle import Bundle
from calibration.drift import DriftMonitor
from calibration.store import BundleStore
from detectors.bounds import PromptBounds, bound_text
from detectors.combiner import answer_features
from detectors.protocol import (
    AnswerView,
    Cost,
    Detector,
    Exchange,
    FinishingPrefixStream,
    Judgement,
    MissingLogprobs,
    PrefixJudge,
    PrefixStream,
    Threshold,
    open_prefix_stream,
)
from detectors.sampling import SamplerStats
from detectors.verdict import Verdict
from policies import (
    Decision,
    Policy,
    PolicyStore,
    Profile,
    Route,
    apply_hard_rule,
    decide,
    prompt_text,
)
from policies.answer_kind import (
    judges_forced_call,
    note_judged_tool_calls,
    request_kind,
    tool_call_decision,
)
from policies.schema import progressive_problems
from proxy.audit import AuditLog, PendingAudit, pending_audit
from proxy.chat.gate_session import Answer, GateOutcome, ProgressivePlan, RequestContext
from proxy.chat.schemas import ChatCompletionRequest
from proxy.decision_records import DecisionRecorder
from proxy.detector_set import DetectorSet
from proxy.errors import InvalidRequest
from proxy.gate_errors import overridden_or_raise, resolve_or_raise
from proxy.metrics import Metrics
from proxy.registry import UpstreamRegistry
from proxy.sampler import UpstreamSampler
from proxy.store.ids import new_response_id
from proxy.tracing import detector as traced_detector
from proxy.upstream import Upstream

log = logging.getLogger("hallgate.gates")

ROUTE_CACHE_SIZE = 1024  # distinct (path, route header, model, key) resolutions kept
BOUND_CACHE_SIZE = 256  # (bundle, profile) bindings kept (overrides make new profiles)


class PolicyGatekeeper:
    def __init__(self, store: PolicyStore, detectors: DetectorSet, registry: UpstreamRegistry,
                 metrics: Metrics, audit: AuditLog | None = None,
                 calibrations: BundleStore | None = None):
        self.store = store
        self.calibrations = calibrations
        self.per_model = frozenset(s.name for s in detectors.registry if s.per_model)
        self.drift = DriftMonitor()  # live score distributions against the bundles
        self.detectors = detectors
        self.registry = registry
        self.metrics = metrics
        self.audit = audit
        self.recorder = DecisionRecorder(metrics, audit)
        self.exchanges = None  # proxy.store.writer.ExchangeStore when the store is on (app.py)
        # the route resolutions of the current policy: a request pays a dict lookup, not
        # the matching (about 30 µs on a cold cache at concurrency 1, bench/overhead.py)
        self._routes: tuple[Policy | None, dict] = (None, {})
        # (id(bundle), id(profile)) -> the profile's detectors under the model's bundle
        self._calibrated: dict[tuple[int, int], tuple[Bundle | None, Profile, tuple]] = {}

    def _resolve(self, policy: Policy, ctx: RequestContext, model: str) -> tuple[Route, Profile]:
        cached_policy, resolved = self._routes
        if cached_policy is not policy:  # a reload: start over
            resolved = {}
            self._routes = (policy, resolved)
        key = (ctx.path, ctx.route_header, model, ctx.key_name)
        found = resolved.get(key)
        if found is None:
            found = resolve_or_raise(policy, ctx, model)  # errors are raised, never cached
            if len(resolved) < ROUTE_CACHE_SIZE:
                resolved[key] = found
        return found

    def _bind(self, profile: Profile,
              ) -> tuple[tuple[str, ...], dict[str, Detector], dict[str, Detector]]:
        """(enabled names, the enabled detectors bound to ``profile``, the cheap ones judged
        and reported though not enabled)."""
        detectors = self.detectors
        enabled = profile.detectors.enabled()
        bound = {n: detectors.bind(n, profile) for n in enabled}
        reporting = {n: detectors.bind(n, profile) for n in detectors.available()
                     if enabled and n not in bound and detectors.spec(n).report_always}
        return enabled, bound, reporting

    def calibrated_detectors(self, bundle: Bundle | None, profile: Profile,
                             ) -> tuple[tuple[str, ...], CalibrationUse,
                                        dict[str, Detector], dict[str, Detector]]:
        """(enabled names, what the bundle calibrates of ``profile``, the enabled
        detectors bound, the reported ones) with the bundle's own plug-ins (HALT on its
        weights) in place of the gateway's; kept per (bundle, profile) object: a request
        pays a dict lookup, not the binding (a reloaded bundle is a new object: a new
        entry)."""
        key = (id(bundle), id(profile))
        found = self._calibrated.get(key)
        if found is not None and found[0] is bundle and found[1] is profile:
            return found[2]
        enabled, bound, reporting = self._bind(profile)
        use = CalibrationUse.of(bundle, enabled, self.per_model, profile.uncalibrated)
        for name, plugin in (bundle.plugins if bundle is not None else {}).items():
            if name in bound or name in reporting:
                det = plugin.bind(profile.detectors[name], profile.context())
                if name in bound:
                    bound = {**bound, name: det}
                else:
                    reporting = {**reporting, name: det}
        if len(self._calibrated) >= BOUND_CACHE_SIZE:
            self._calibrated.clear()
        self._calibrated[key] = (bundle, profile, (enabled, use, bound, reporting))
        return enabled, use, bound, reporting

    def begin(self, request: ChatCompletionRequest, ctx: RequestContext,
              model: str) -> PolicySession:
        policy = self.store.policy  # read once: a reload mid-request does not affect it
        route, profile = self._resolve(policy, ctx, model)
        if ctx.override_headers:
            profile = overridden_or_raise(profile, ctx.override_headers,
                                          self.detectors.available())
        messages = request.raw_messages()
        escalation = None
        if profile.escalate_factual_to is not None:  # only such routes read the prompt
            # The hard rule reads a bounded text: its regexes take 0.2 s on 1 MB.
            text = bound_text(prompt_text(messages), PromptBounds().max_chars)
            profile, escalation = apply_hard_rule(policy, profile, text)
        combiner = policy.combiner(profile)
        if profile.combine.mode == "learned" and combiner is None:
            raise InvalidRequest(f"profile '{profile.name}' has no combiner file for "
                                 "combine mode 'learned'", param="x-hallgate-combine-mode",
                                 code="override_refused")
        bundle = self.calibrations.get(model) if self.calibrations is not None else None
        if (profile.combine.mode == "learned" and bundle is not None
                and bundle.combiner is not None
                and bundle.combiner.detectors() <= set(profile.detectors.enabled())):
            combiner = bundle.combiner  # the model's own fit
        return PolicySession(self, route.name, profile, escalation, messages,
                             self.registry.get(model), ctx, model, combiner, bundle,
                             start_now=judges_forced_call(profile, request.tool_choice),
                             max_tokens=request.max_completion_tokens or request.max_tokens)


class CutFirst(Exception):
    """A prompt-time detector that had not answered when the stream was cut."""


async def _measured(work: Awaitable[Any]) -> tuple[Any, float]:
    """(the work's result or its exception, its wall time in ms)."""
    start = time.perf_counter()
    try:
        result = await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        result = exc
    return result, (time.perf_counter() - start) * 1e3


class PolicySession:
    def __init__(self, keeper: PolicyGatekeeper, route: str, profile: Profile, escalation,
                 messages: list[dict], upstream: Upstream, ctx: RequestContext, model: str,
                 combiner: Any = None, bundle: Bundle | None = None, start_now: bool = True,
                 max_tokens: int | None = None):
        self.keeper, self.route, self.profile = keeper, route, profile
        self.max_tokens = max_tokens  # the request's answer cap (the answer kind reads it)
        self.escalation, self.messages, self.upstream = escalation, messages, upstream
        self.ctx, self.model, self.combiner = ctx, model, combiner
        self.response_id = new_response_id()  # the client's id for this answer
        self.enabled, self.calibration, self.bound, self.reporting = \
            keeper.calibrated_detectors(bundle, profile)
        # judge() reads no answer when every detector is off, so such a route asks the
        # upstream only for what the client asked for, and streams it as it comes:
        # holding back an answer that nothing judges would only delay it
        self.reads_logprobs = bool(self.enabled)
        self.streaming_mode = profile.streaming if self.enabled else "passthrough"
        self.headers = {"x-hallgate-route": route, "x-hallgate-profile": profile.name,
                        "x-hallgate-calibration": self.calibration.name}
        if self.enabled and self.calibration.uncalibrated:
            keeper.metrics.uncalibrated.labels(model, profile.uncalibrated).inc()
        if self.streaming_mode in ("passthrough", "progressive"):
            # see the stream's last chunk; with nothing to judge the answer is the decision
            self.headers["x-hallgate-decision"] = "deferred" if self.enabled else "answer"
        if keeper.audit is not None:  # a failure before the decision is audited too
            pending_audit.set(PendingAudit(keeper.audit, ctx.request_id, model, messages,
                                           route, profile.name, ctx.key_name))
        self._stats: dict[str, SamplerStats] = {}
        self._started: dict[str, asyncio.Future] = {}
        self._prefix: tuple[str, Any, Threshold] | None = None
        self._uncertified: list[str] = []  # detectors with no threshold for target_risk
        self._prefix_stream: PrefixStream | None = None
        self._prefix_fed = 0  # answer tokens the prefix stream has read
        # prompt-time work starts with the request, unless the answer must call a tool
        # the profile does not judge: then only an answer that disobeys starts it
        self._start_late = not start_now
        if start_now:
            for name, det in self.bound.items():
                self._start(name, det)

    def _start(self, name: str, det: Detector) -> asyncio.Future | None:
        """``det``'s prompt-time work, started as a task (None: it has none)."""
        work = det.start(self._exchange(name))
        if work is None:
            return None
        # a detector that also reads the answer is observed once, when it has judged it
        task = self._started[name] = asyncio.ensure_future(
            self._timed(name, work, "prompt", observe=not det.needs.answer))
        return task

    def _calibrated(self, name: str, result: Any) -> Any:
        """``result`` against the bundle's threshold for ``name`` unless the profile set
        one: the operating point certified for the profile's ``target_risk`` (none: 0, the
        detector abstains), else the bundle's answer threshold ("calibrated")."""
        bundle = self.calibration.bundle
        if (bundle is None or not isinstance(result, Judgement) or result.threshold is None
                or result.threshold.source == "profile" or result.threshold.score != "risk"):
            return result
        alpha = self.profile.target_risk
        if alpha is not None:
            point = bundle.operating_point(name, alpha, self.profile.target_delta)
            certified = point.threshold if point is not None else None
            if certified is None and name in self.bound:
                self._uncertified.append(name)
            return result.with_threshold(Threshold(0.0 if certified is None else certified,
                                                   "certified"))
        value = bundle.answer_threshold(name)
        return result if value is None else result.with_threshold(Threshold(value,
                                                                            "calibrated"))

    def _observe_drift(self, results: dict[str, Any]) -> None:
        bundle = self.calibration.bundle
        if bundle is None:
            return
        drift = self.keeper.drift
        for name, result in results.items():
            if (isinstance(result, Judgement) and math.isfinite(result.risk)
                    and drift.observe(bundle, name, result.risk)):
                # the gauge computes the PSI when scraped, never on a request
                self.keeper.metrics.calibration_psi.labels(self.model, name).set_function(
                    partial(drift.psi, bundle, name))

    def _decide(self, results: dict[str, Any], answer: Any) -> Decision:
        """policies.decide() under the profile's `uncalibrated` behaviour, saying which
        detectors have no threshold certified for the profile's target risk."""
        decision = self._decide_calibrated(results, answer)
        if not self._uncertified:
            return decision
        why = (f"target_risk {self.profile.target_risk:g} (delta "
               f"{self.profile.target_delta:g}): no threshold of "
               f"{', '.join(self._uncertified)} is certified for this model, so it abstains")
        return replace(decision, reasons=(*decision.reasons, why))

    def _decide_calibrated(self, results: dict[str, Any], answer: Any) -> Decision:
        use = self.calibration
        if not use.uncalibrated or use.behaviour == "annotate":
            decision = decide(self.profile, results, route=self.route,
                              escalation=self.escalation, answer=answer,
                              combiner=self.combiner)
            return decision if not use.uncalibrated else replace(
                decision, reasons=(*decision.reasons, use.reason()))
        counting = use.counting(self.enabled)
        combine = "any" if self.profile.combine.mode == "learned" else None
        decision = decide(self.profile, results, route=self.route, escalation=self.escalation,
                          answer=answer, counting=counting, combine=combine)
        if use.behaviour == "model_agnostic" and counting:
            return replace(decision, reasons=(*decision.reasons, use.reason()))
        returned = Verdict.ABSTAIN if self.profile.action == "abstain" else Verdict.ANSWER
        return replace(decision, verdict=Verdict.ABSTAIN, returned=returned, risk=1.0,
                       reasons=(*decision.reasons, use.reason()))

    def _exchange(self, name: str) -> Exchange:
        stats = self._stats.setdefault(name, SamplerStats())
        return Exchange(self.messages, UpstreamSampler(self.upstream, stats), self.model)

    async def _timed(self, name: str, work: Awaitable[Any], phase: str = "answer", *,
                     observe: bool = True, earlier_ms: float = 0.0) -> tuple[Any, float]:
        """One detector phase in its span; (result or exception, ms). ``observe``: the
        detector's latency (this phase plus ``earlier_ms`` of its prompt phase) goes to the
        metrics. A failure is logged and counted (missing logprobs is no failure)."""
        result, ms = await _measured(traced_detector(name, work, phase))
        if observe:
            self.keeper.metrics.detector_seconds.labels(name).observe((ms + earlier_ms) / 1e3)
        if isinstance(result, Exception) and not isinstance(result, MissingLogprobs):
            log.warning("detector %s failed: %r", name, result)
            self.keeper.metrics.detector_errors.labels(name).inc()
        return result, ms

    async def _judgement(self, name: str, det: Detector, answer: AnswerView,
                         ) -> Judgement | BaseException:
        """``det``'s judgement with its cost, or the exception it raised."""
        task = self._started.get(name)
        if task is None and self._start_late and name in self.bound:
            task = self._start(name, det)
        start_ms = 0.0
        started = None
        if task is not None:
            started, start_ms = await asyncio.shield(task)  # prompt_verdict may share it
            if isinstance(started, BaseException):
                if det.needs.answer:  # its prompt phase is all the latency there is
                    self.keeper.metrics.detector_seconds.labels(name).observe(start_ms / 1e3)
                return started
        work = self._streamed(name, answer) or det.judge(self._exchange(name), answer, started)
        # a detector that did its work at prompt time and reads no answer only packages
        # its result now: its span and timing are the prompt-time ones
        if task is None or det.needs.answer:
            result, ms = await self._timed(name, work, earlier_ms=start_ms)
        else:
            result, ms = await _measured(work)
        if isinstance(result, BaseException):
            return result
        stats = self._stats.get(name) or SamplerStats()
        return result.with_cost(Cost(stats.calls, stats.prompt_tokens, stats.completion_tokens,
                                     start_ms + ms))

    async def judge(self, answers: list[Answer]) -> GateOutcome:
        """Judge the first choice (the answer a client reads) under the profile."""
        if not self.enabled:
            return self._outcome(None, answers)
        primary = answers[0] if answers else Answer(0, "", None)
        unjudged = tool_call_decision(self.profile, primary.tool_calls, route=self.route,
                                      escalation=self.escalation)
        if unjudged is not None:  # tool calls the profile passes (or refuses) unjudged
            self._record(unjudged, primary)
            return self._outcome(unjudged, answers)
        view = AnswerView(primary.text, primary.tokens)
        judging = dict(self.bound)
        if primary.tokens and not self._judged_by_stream():
            judging.update(self.reporting)
        found = await asyncio.gather(*(self._judgement(n, d, view) for n, d in judging.items()))
        results = {n: self._calibrated(n, r) for n, r in zip(judging, found, strict=True)}
        self._observe_drift(results)
        decision = self._decide(results, answer_features(primary.tokens))
        decision = note_judged_tool_calls(decision, primary.tool_calls, text=primary.text,
                                          has_logprobs=bool(primary.tokens))
        self._record(decision, primary)
        return self._outcome(decision, answers, results)

    def _record(self, decision: Decision, answer: Answer | None = None) -> None:
        self.keeper.recorder.record(decision, request_id=self.ctx.request_id,
                                    model=self.model, messages=self.messages,
                                    usage=self._gate_usage(), key_name=self.ctx.key_name)
        if self.keeper.exchanges is not None:  # the store's sample: queued, never awaited
            self.keeper.exchanges.offer(self, decision, answer)

    # --- progressive streaming (proxy/chat/progressive.py drives these) --------------

    def progressive_plan(self) -> ProgressivePlan | None:
        """The release rules of a progressive stream: its prefix judge is the one the
        profile names (`progressive.detector`), else its first enabled detector that judges
        prefixes. None when the profile cannot stream progressively (policy check refuses
        such profiles; this guards header overrides and hard-rule targets)."""
        if self.profile.streaming != "progressive" or progressive_problems(self.profile):
            return None
        knobs = self.profile.progressive
        for name, det in self.bound.items():
            if knobs.detector not in (None, name):
                continue
            if self.keeper.detectors.spec(name).judges_prefixes and isinstance(det,
                                                                                PrefixJudge):
                threshold = det.prefix_threshold(knobs.threshold)
                bundle = self.calibration.bundle
                value = bundle.prefix_threshold(name) if bundle is not None else None
                if value is not None and threshold.source != "profile":
                    threshold = Threshold(value, "calibrated")
                self._prefix = (name, det, threshold)
                kind = request_kind(self.messages, self.max_tokens)
                cuts_kind = knobs.cut_on is None or kind in knobs.cut_on
                return ProgressivePlan(knobs.holdback_tokens, knobs.rescore_every,
                                       threshold.value,
                                       cut=self.profile.action == "abstain" and cuts_kind,
                                       detector=name, answer_kind=kind,
                                       kind_uncut=not cuts_kind,
                                       holds_tail=self.profile.action == "abstain")
        return None

    def _prompt_time(self) -> list[str]:
        """The started detectors that judge the prompt alone (no answer needed)."""
        return [n for n in self._started if not self.bound[n].needs.answer]

    async def prompt_verdict(self) -> GateOutcome | None:
        """Wait for the prompt-time detectors (started in begin); the abstention when they
        decide the answer on their own (combine `any`, action abstain), else None."""
        names = self._prompt_time()
        if not names:
            return None
        empty = AnswerView("", None)
        found = await asyncio.gather(*(self._judgement(n, self.bound[n], empty)
                                       for n in names))
        if self.profile.combine.mode != "any" or self.profile.action != "abstain":
            return None
        results = dict(zip(names, found, strict=True))
        decision = decide(self.profile, results, route=self.route, escalation=self.escalation,
                          counting=tuple(names), combine="any")
        if not decision.abstained:
            return None
        self._record(decision)
        return self._outcome(decision, [], results)

    async def feed_prefix(self, tokens: Sequence[dict]) -> Judgement | None:
        """The prefix judge on the answer prefix so far, given the tokens since the previous
        call (its :class:`PrefixStream` carries the state); None when it cannot judge it
        (the stream goes on and the whole answer is judged at its end)."""
        if self._prefix is None:
            return None
        name, det, threshold = self._prefix
        if self._prefix_stream is None:
            self._prefix_stream = open_prefix_stream(det, threshold)
        self._prefix_fed += len(tokens)
        result, _ = await self._timed(f"{name}_prefix", self._prefix_stream.feed(tokens))
        return None if isinstance(result, BaseException) else result

    def _judged_by_stream(self) -> bool:
        """A progressive stream's prefix judge has read the answer and its carried state
        judges it whole: the report-only detectors (``report_always``) are then left out,
        since reporting them would re-read the answer the profile chose not to re-read."""
        return self._prefix_fed > 0 and isinstance(self._prefix_stream, FinishingPrefixStream)

    def _streamed(self, name: str, answer: AnswerView) -> Awaitable[Judgement] | None:
        """The whole answer's judgement of ``name`` from its prefix stream's carried state
        (only the tokens the stream has not read), when that stream read this answer."""
        stream, fed = self._prefix_stream, self._prefix_fed
        if (self._prefix is None or self._prefix[0] != name or fed == 0
                or not isinstance(stream, FinishingPrefixStream)
                or not answer.tokens or len(answer.tokens) < fed):
            return None
        self._prefix_stream = None  # its state is consumed by this judgement
        return stream.finish(answer.tokens[fed:])

    async def judge_cut(self, answer: Answer, judgement: Judgement) -> GateOutcome:
        """The decision of a stream cut at a prefix: the prefix judgement decides (combine
        `any` over it); prompt-time detectors are reported when they have answered, else
        as cut short."""
        name = judgement.detector
        results: dict[str, Any] = {name: judgement}
        for other in self._prompt_time():
            task = self._started.pop(other)
            if task.done() and not task.cancelled():
                self._started[other] = task
                results[other] = await self._judgement(other, self.bound[other],
                                                       AnswerView("", None))
            else:
                task.cancel()
                results[other] = CutFirst(f"the stream was cut before {other} answered")
        decision = decide(self.profile, results, route=self.route, escalation=self.escalation,
                          answer=answer_features(answer.tokens), counting=tuple(results),
                          combine="any")
        self._record(decision, answer)
        return self._outcome(decision, [answer], results)

    def _gate_usage(self) -> dict:
        """What the detectors themselves cost upstream (the answer's own usage apart)."""
        stats = list(self._stats.values())
        return {"gate_calls": sum(s.calls for s in stats),
                "gate_prompt_tokens": sum(s.prompt_tokens for s in stats),
                "gate_completion_tokens": sum(s.completion_tokens for s in stats)}

    def _outcome(self, decision: Decision | None, answers: list[Answer],
                 results: dict[str, Any] | None = None) -> GateOutcome:
        if decision is None:
            return GateOutcome(headers={"x-hallgate-decision": Verdict.ANSWER.value,
                                        "x-hallgate-returned": Verdict.ANSWER.value})
        headers = decision.response_headers()
        metadata = decision.to_dict(detail=False) if decision.shown_to_client else None
        if metadata is not None:
            metadata["calibration"] = self.calibration.to_dict()
        if decision.abstained:
            return GateOutcome(abstain=True, replacement=self.profile.abstention_text,
                               metadata=metadata, headers=headers)
        preferred = next((r.replacement for n, r in (results or {}).items()
                          if n in self.bound and isinstance(r, Judgement) and r.replacement),
                         None)
        if (decision.action == "abstain" and preferred and answers
                and preferred != answers[0].text):
            return GateOutcome(replacement=preferred, metadata=metadata, headers=headers)
        return GateOutcome(metadata=metadata, headers=headers)

    async def aclose(self) -> None:
        for task in self._started.values():
            task.cancel()
        for task in self._started.values():
            with contextlib.suppress(BaseException):
                await task
        self._started.clear()
