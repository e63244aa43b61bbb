"""Pure functions that turn a judged exchange into a row of ``exchanges``.

Without ``include_prompt`` a row carries numbers, enumerations and SHA-256 hashes only:
the decision goes through the audit log's redaction (:mod:`proxy.audit_redact`), the
answer's logprobs keep their numbers and lose their token strings, and the samples'
summary keeps cluster sizes and masses, not the sampled answers.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Any

from proxy.audit import prompt_sha256
from proxy.audit_redact import redact_decision


def _number(value: Any) -> float | None:
    """A JSON-safe float: NaN and ±infinity (a −inf logprob) become None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def logprob_matrix(tokens: list[dict] | None) -> dict | None:
    """The answer's token logprobs as numbers: ``chosen[t]`` is token t's own logprob and
    ``top[t]`` its top-k alternatives' logprobs in the upstream's order (k varies per
    token: llama.cpp sends 1 to 21); None when the upstream sent no logprobs. A −inf
    logprob is written as null (the engine's JSON serializer, orjson, writes NaN and
    infinities so)."""
    if tokens is None:
        return None
    return {"chosen": [t.get("logprob") for t in tokens],
            "top": [[a.get("logprob") for a in t.get("top_logprobs") or ()]
                    for t in tokens]}


def token_strings(tokens: list[dict] | None) -> list[list[str]] | None:
    """``[t] = [chosen token, top-k alternatives...]`` as text (include_prompt only)."""
    if tokens is None:
        return None
    return [[str(t.get("token", "")), *(str(a.get("token", ""))
                                        for a in t.get("top_logprobs") or ())]
            for t in tokens]


def samples_summary(detectors: dict) -> dict | None:
    """What the detectors drew, as numbers: the semantic gate's meaning clusters (size,
    count and probability mass, prior, refusal-like) and how many answers it sampled;
    EDFL's skeleton count and estimator per prompt. None when no detector sampled."""
    out: dict[str, Any] = {}
    semantic = detectors.get("semantic") or {}
    if "clusters" in semantic:
        out["semantic"] = {
            "answers": len(semantic.get("answers") or ()),
            "top": semantic.get("top"),
            "clusters": [{"size": len(c.get("members") or ()),
                          "count_mass": _number(c.get("count_mass")),
                          "prob_mass": _number(c.get("prob_mass")),
                          "prior": _number(c.get("prior")),
                          "refusal": bool(c.get("refusal"))}
                         for c in semantic["clusters"]]}
    edfl = detectors.get("edfl") or {}
    if "skeletons" in edfl:
        out["edfl"] = {"skeletons": len(edfl["skeletons"]),
                       "methods": list(edfl.get("methods") or ())}
    return out or None


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def exchange_row(*, response_id: str, request_id: str | None, created_at: float, model: str,
                 key_name: str | None, messages: list[dict], decision: dict,
                 answer_text: str | None, tokens: list[dict] | None, include_prompt: bool,
                 bundle_id: str | None = None) -> dict:
    """The ``exchanges`` row of one judged exchange (``decision``: Decision.to_dict())."""
    kept = decision if include_prompt else redact_decision(decision)
    row = {
        "response_id": response_id,
        "request_id": request_id,
        "created_at": datetime.fromtimestamp(created_at, UTC),
        "model": model,
        "route": decision.get("route"),
        "profile": decision.get("profile"),
        "bundle_id": bundle_id,
        "key_name": key_name,
        "decision": decision.get("decision"),
        "returned": decision.get("returned"),
        "action": decision.get("action"),
        "risk": _number(decision.get("risk")),
        "detectors": kept.get("detectors", {}),
        "reasons": kept.get("reasons", []),
        "logprobs": logprob_matrix(tokens),
        "samples": samples_summary(decision.get("detectors", {})),
        "prompt_sha256": prompt_sha256(messages),
        "answer_sha256": text_sha256(answer_text) if answer_text is not None else None,
        "prompt": None, "answer": None, "tokens": None,
    }
    if include_prompt:
        row.update(prompt=messages, answer=answer_text, tokens=token_strings(tokens))
    return row
