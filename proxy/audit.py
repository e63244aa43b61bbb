"""One JSON line per gated request: what was decided, why, and at what cost.

Records carry a SHA-256 of the prompt, and the prompt text only when configured. Without
``include_prompt`` no prompt-derived text goes in either: skeletons, sampled answers,
escalation reasons and error messages are cut out (:mod:`proxy.audit_redact`), leaving
hashes and scores. Records never carry keys: the gateway key appears by its configured
*name* only.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from proxy.audit_redact import redact_decision


def prompt_sha256(messages: list[dict]) -> str:
    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditLog:
    def __init__(self, path: str | Path, include_prompt: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.include_prompt = include_prompt
        self._lock = threading.Lock()

    def record(self, *, request_id: str, model: str, messages: list[dict], decision: dict,
               usage: dict | None, key_name: str | None) -> dict:
        if not self.include_prompt:
            decision = redact_decision(decision)
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "request_id": request_id,
            "key_name": key_name,
            "model": model,
            "route": decision.get("route"),
            "profile": decision.get("profile"),
            "decision": decision.get("decision"),  # the judgement
            "returned": decision.get("returned"),  # what the client got
            "action": decision.get("action"),
            "reasons": decision.get("reasons", []),
            "scores": decision.get("detectors", {}),
            "usage": usage or {},
            "prompt_sha256": prompt_sha256(messages),
            "escalated_by_hard_rule": decision.get("escalated_by_hard_rule"),
            "escalation_reason": decision.get("escalation_reason"),
        }
        if decision.get("escalation_reason_sha256"):
            entry["escalation_reason_sha256"] = decision["escalation_reason_sha256"]
        if self.include_prompt:
            entry["prompt"] = messages
        return self._write(entry)

    def record_failure(self, *, request_id: str, model: str, messages: list[dict],
                       route: str, profile: str, key_name: str | None, status: int,
                       error_type: str, code: str | None, message: str) -> dict:
        """A request that ended in an error (502, 504, the upstream's 4xx, ...): no
        decision was made; the error message only with ``include_prompt`` (upstreams echo
        input in their messages)."""
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "request_id": request_id, "key_name": key_name, "model": model,
            "route": route, "profile": profile, "decision": "error", "status": status,
            "error": {"type": error_type, "code": code}, "prompt_sha256": prompt_sha256(messages),
        }
        if self.include_prompt:
            entry["error"]["message"] = message
            entry["prompt"] = messages
        return self._write(entry)

    def _write(self, entry: dict) -> dict:
        line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
        return entry


@dataclass
class PendingAudit:
    """A gated request whose audit record is not written yet: if it fails before its
    decision, the error handler writes a failure record from this."""

    audit: AuditLog
    request_id: str
    model: str
    messages: list[dict]
    route: str
    profile: str
    key_name: str | None

    def failed(self, status: int, error_type: str, code: str | None, message: str) -> None:
        self.audit.record_failure(
            request_id=self.request_id, model=self.model, messages=self.messages,
            route=self.route, profile=self.profile, key_name=self.key_name, status=status,
            error_type=error_type, code=code, message=message)


# Set by the gate session when a request starts, cleared once its decision is audited;
# the error handlers (proxy/errors.py) run in the same task and read it.
pending_audit: ContextVar[PendingAudit | None] = ContextVar("hallgate_pending_audit",
                                                            default=None)


def audit_failure(status: int, error_type: str, code: str | None, message: str) -> None:
    """Write the failure record of the current request, if it still owes one."""
    pending = pending_audit.get()
    if pending is not None:
        pending_audit.set(None)
        pending.failed(status, error_type, code, message)
