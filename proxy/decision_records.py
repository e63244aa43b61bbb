"""Where a decision is recorded: the decisions metric, the trace's evaluation events and
the audit log (one line per request)."""

from __future__ import annotations

from policies import Decision
from proxy.audit import AuditLog, pending_audit
from proxy.metrics import Metrics
from proxy.tracing import record_decision as trace_decision


class DecisionRecorder:
    def __init__(self, metrics: Metrics, audit: AuditLog | None):
        self.metrics = metrics
        self.audit = audit

    def record(self, decision: Decision, *, request_id: str, model: str, messages: list[dict],
               usage: dict, key_name: str | None) -> None:
        self.metrics.decisions.labels(decision.profile, decision.verdict.value).inc()
        trace_decision(decision)  # gen_ai.evaluation.result events when tracing is on
        if self.audit is not None:
            pending_audit.set(None)
            self.audit.record(request_id=request_id, model=model, messages=messages,
                              decision=decision.to_dict(), usage=usage, key_name=key_name)
