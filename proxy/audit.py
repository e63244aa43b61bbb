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
            "decision": decision.get("decision"),
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
        line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
        return entry
