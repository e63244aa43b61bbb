"""What of a decision may go into the audit log when prompts are not to be kept.

With ``audit.include_prompt: false`` no prompt-derived text may reach the log: not the
prompt, nor EDFL's skeletons (the prompt with a few spans masked), the semantic gate's
sampled answers and clusters, the hard rule's escalation reason (it quotes the entities it
found), or an error message (upstreams echo input). What stays is hashes and scores:

- numbers, booleans and nulls, at any depth (lists of numbers too);
- strings only under keys that hold enumerations (``verdict``, ``status``, ``mode``, ...)
  and only when they look like one (short identifiers);
- reasons with every quoted span and every error message cut out:
  ``edfl: error (UpstreamError: ...)`` becomes ``edfl: error (UpstreamError)``;
- a ``redacted`` list naming the keys that were dropped, and a SHA-256 of the escalation
  reason so equal reasons can still be counted.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

ENUM_KEYS = frozenset({
    "detector", "verdict", "status", "mode", "methods", "method", "decision", "returned",
    "action", "route", "profile", "combine", "fail_mode", "delta_mode", "backend",
    "escalated_from", "entailment", "mass", "threshold_source", "threshold_score",
})
_ENUM_VALUE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|‘[^’]*’|“[^”]*”")
_ERROR_DETAIL = re.compile(r"\((\w+)(?::[^()]*(?:\([^()]*\)[^()]*)*)?\)")
_SAFE_REASON = re.compile(r"^[\w\s.,:;()<>=!*+\-/%…]*$")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def scrub_reason(reason: str) -> str:
    """A reason with quoted spans and error messages removed; a reason that still has
    characters outside the decision templates' alphabet is replaced by its hash."""
    text = _QUOTED.sub("…", reason)
    text = _ERROR_DETAIL.sub(lambda m: f"({m.group(1)})", text)
    return text if _SAFE_REASON.match(text) else f"sha256:{_sha(reason)}"


def _scrub(value: Any, key: str, dropped: set[str]) -> Any:
    """``value`` with prompt-derived text removed; ``None`` marks it as dropped."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if key in ENUM_KEYS and _ENUM_VALUE.match(value):
            return value
        dropped.add(key)
        return None
    if isinstance(value, dict):
        return _scrub_mapping(value, dropped)
    if isinstance(value, list | tuple):
        items = [_scrub(v, key, dropped) for v in value]
        if any(i is None and v is not None for i, v in zip(items, value, strict=True)):
            dropped.add(key)
            return None
        return items
    dropped.add(key)
    return None


def _scrub_mapping(mapping: dict, dropped: set[str]) -> dict:
    out = {}
    for key, value in mapping.items():
        if key in ("reason", "reasons") and isinstance(value, str | list | tuple):
            reasons = [value] if isinstance(value, str) else value
            scrubbed = [scrub_reason(r) if isinstance(r, str) else r for r in reasons]
            out[key] = scrubbed[0] if isinstance(value, str) else scrubbed
            continue
        clean = _scrub(value, key, dropped)
        if clean is not None or value is None:
            out[key] = clean
    return out


def redact_scores(detectors: dict) -> dict:
    """Per detector: its scores with every prompt-derived text removed."""
    out = {}
    for name, detail in detectors.items():
        dropped: set[str] = set()
        clean = _scrub_mapping(detail, dropped) if isinstance(detail, dict) else {}
        if dropped:
            clean["redacted"] = sorted(dropped)
        out[name] = clean
    return out


def redact_decision(decision: dict) -> dict:
    """The decision's reasons and escalation without prompt text (scores: see above)."""
    out = {**decision, "reasons": [scrub_reason(r) for r in decision.get("reasons", [])]}
    reason = decision.get("escalation_reason")
    if reason:
        out["escalation_reason"] = None
        out["escalation_reason_sha256"] = _sha(reason)
    out["detectors"] = redact_scores(decision.get("detectors", {}))
    return out
