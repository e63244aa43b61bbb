"""Pure functions that turn a judged exchange into a row of ``exchanges``, in two steps:

    gateway:        exchange --exchange_frame--> bytes (JSON)    (at the request's end)
    writer process: bytes   --row_from_frame--> the row          (proxy/store/writer_process.py)

The gateway's step is one orjson call over what it already holds (the decision dataclass
as it is, the answer's logprobs as numbers); everything else, the redaction, the hashes,
the row, happens in the writer process, off the event loop's thread.

Without ``include_prompt`` a row carries numbers, enumerations and SHA-256 hashes only:
the detectors' scores and the reasons go through the audit log's redaction
(:mod:`proxy.audit_redact`), the answer's logprobs keep their numbers and lose their token
strings (which the frame then does not carry at all), and the samples' summary keeps
cluster sizes and masses, not the sampled answers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import orjson

from proxy.audit import prompt_sha256
from proxy.audit_redact import redact_scores, scrub_reason

FRAME_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _number(value: Any) -> float | None:
    """A JSON-safe float: NaN and ±infinity (a −inf logprob) become None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def logprob_matrix(tokens: list[dict] | None) -> dict | None:
    """The answer's token logprobs as numbers: ``chosen[t]`` is token t's own logprob and
    ``top[t]`` its top-k alternatives' logprobs in the upstream's order (k varies per
    token: llama.cpp sends 1 to 21); None when the upstream sent no logprobs. A −inf
    logprob is written as null (orjson writes NaN and infinities so)."""
    if tokens is None:
        return None
    try:  # the upstream's usual shape, read by subscripts (the request's event loop pays)
        return {"chosen": [t["logprob"] for t in tokens],
                "top": [[a["logprob"] for a in t["top_logprobs"] or ()] for t in tokens]}
    except (KeyError, TypeError):  # a token without its logprob or alternatives
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


def _plain(value: Any) -> Any:
    """What JSON cannot hold as it is, as :meth:`policies.Decision.to_dict` writes it: a
    dataclass as its fields, an enum by value, a set as a list, numpy by ``tolist``,
    other numbers as floats, anything else as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__float__"):
        return float(value)
    return str(value)


def exchange_frame(*, response_id: str, request_id: str | None, created_at: float,
                   model: str, key_name: str | None, bundle_id: str | None,
                   messages: list[dict], decision: Any, answer: Any,
                   include_prompt: bool) -> bytes:
    """The exchange as the writer process reads it: one JSON object (orjson writes the
    decision's dataclasses as their fields, NaN and infinities as null). ``answer``: the
    gate's Answer (``.text``, ``.tokens``), or None when the decision came before it. The
    answer's token strings go only with ``include_prompt``."""
    tokens = answer.tokens if answer is not None else None
    parts = {"response_id": response_id, "request_id": request_id,
             "created_at": created_at, "model": model, "key_name": key_name,
             "bundle_id": bundle_id, "messages": messages, "decision": decision,
             "answer": answer.text if answer is not None else None,
             "logprobs": logprob_matrix(tokens),
             "tokens": token_strings(tokens) if include_prompt else None}
    try:
        return orjson.dumps(parts, default=_plain, option=FRAME_OPTIONS)
    except TypeError:  # what orjson refuses: an integer beyond 64 bits in a client's message
        return json.dumps(parts, default=_plain).encode()


def detector_dicts(detectors: dict) -> dict:
    """Each detector's part of a decision as ``DetectorScore.to_dict()`` writes it (its
    detail with status, counted, verdict and risk), from the dataclass's fields."""
    return {name: {**(score.get("detail") or {}), "status": score.get("status"),
                   "counted": score.get("counted"), "verdict": score.get("verdict"),
                   "risk": score.get("risk")}
            for name, score in detectors.items()}


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


def exchange_row(frame: dict, include_prompt: bool) -> dict:
    """The ``exchanges`` row of one decoded frame (:func:`exchange_frame`)."""
    decision = frame["decision"]
    detectors = detector_dicts(decision.get("detectors") or {})
    reasons = list(decision.get("reasons") or ())
    answer = frame.get("answer")
    row = {
        "response_id": frame["response_id"],
        "request_id": frame.get("request_id"),
        "created_at": datetime.fromtimestamp(frame["created_at"], UTC),
        "model": frame["model"],
        "route": decision.get("route"),
        "profile": decision.get("profile"),
        "bundle_id": frame.get("bundle_id"),
        "key_name": frame.get("key_name"),
        "decision": decision.get("verdict"),
        "returned": decision.get("returned"),
        "action": decision.get("action"),
        "risk": _number(decision.get("risk")),
        "detectors": detectors if include_prompt else redact_scores(detectors),
        "reasons": reasons if include_prompt else [scrub_reason(r) for r in reasons],
        "logprobs": frame.get("logprobs"),
        "samples": samples_summary(detectors),
        "prompt_sha256": prompt_sha256(frame["messages"]),
        "answer_sha256": text_sha256(answer) if answer is not None else None,
        "prompt": None, "answer": None, "tokens": None,
    }
    if include_prompt:
        row.update(prompt=frame["messages"], answer=answer, tokens=frame.get("tokens"))
    return row


def row_from_frame(frame: bytes, include_prompt: bool) -> dict:
    """Decode a frame and build its row (the stdlib's parser for a frame the stdlib wrote:
    it may hold NaN, which orjson does not read)."""
    try:
        parts = orjson.loads(frame)
    except orjson.JSONDecodeError:
        parts = json.loads(frame)
    return exchange_row(parts, include_prompt)
