"""POST [/<route prefix>]/v1/feedback: an application labels an answer by its id.

    {"id": "chatcmpl-…" | "resp_…", "label": "correct" | "incorrect" | "unsure",
     "score": 0.0-1.0 (optional), "gold": "...", "comment": "..."}  ->  200
    {"object": "feedback", "id": ..., "label": ..., "created_at": ..., "labels": n}

``POST [/<prefix>]/v1/feedback/bulk`` takes the same objects as JSONL, one per line, for
labels produced offline, and answers each line's result in order.

Authenticated like every other call (gateway keys); a key labels only the answers it
received (403). Every label is kept; the newest one counts (posting again is safe). An id
the store does not hold is a 404 whose message says why: never minted here, not sampled
(or dropped), or expired. Without ``store.include_prompt`` the gold answer and the
comment are kept as SHA-256 hashes only. Bad bodies are 400s naming the field.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxy.errors import HallgateError, InvalidRequest, PermissionDenied, validation_error
from proxy.store.ids import FIND_WAIT_S, canonical_response_id, minted_at
from proxy.store.records import text_sha256

router = APIRouter()


class ResponseNotFound(HallgateError):
    status = 404
    type = "invalid_request_error"
    code = "response_not_found"


class StoreUnavailable(HallgateError):
    status = 503
    type = "server_error"
    code = "store_unavailable"


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)  # the id of the chat completion/response
    label: Literal["correct", "incorrect", "unsure"]
    score: float | None = Field(None, ge=0.0, le=1.0)  # optional graded judgement
    gold: str | None = Field(None, max_length=100_000)  # the right answer, when known
    comment: str | None = Field(None, max_length=10_000)


def _not_found(given: str, canonical: str | None, max_age_days: float | None) -> ResponseNotFound:
    """The 404 for an id the store does not hold, saying which case it is."""
    if canonical is None:
        return ResponseNotFound(f"'{given}' is not a response id of this gateway (its ids "
                                f"look like chatcmpl-<32 hex digits> or resp_<32 hex "
                                f"digits>).", param="id")
    made = minted_at(canonical) or 0.0
    when = datetime.fromtimestamp(made, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if max_age_days is not None and time.time() - made > max_age_days * 86400:
        return ResponseNotFound(f"Response '{given}' (made {when}) has expired: the store "
                                f"keeps exchanges for {max_age_days:g} days.", param="id")
    return ResponseNotFound(f"Response '{given}' (made {when}) was not stored: its route "
                            f"keeps only a sampled share of exchanges (store.sample), or the "
                            f"store dropped or trimmed it, or the replica that answered it "
                            f"has not written it yet (a label waits {FIND_WAIT_S:g} s from "
                            f"the answer for that; post it again later).", param="id")


def _store_of(request: Request):
    store = getattr(request.app.state, "exchanges", None)
    if store is None:
        raise ResponseNotFound("This gateway keeps no store of exchanges (store.enabled is "
                               "off), so it has nothing to label.", param="id",
                               code="store_disabled")
    return store


async def label(store, settings, body: FeedbackRequest, key_name: str | None) -> dict:
    """Store one label; raises the OpenAI-shaped error of each refusal."""
    canonical = canonical_response_id(body.id)
    if canonical is None:
        raise _not_found(body.id, None, settings.max_age_days)
    try:
        found = await store.find(canonical)
    except Exception as exc:
        raise StoreUnavailable(f"The store cannot be read right now ({type(exc).__name__})."
                               ) from exc
    if found is None:
        raise _not_found(body.id, canonical, settings.max_age_days)
    if found["key_name"] != key_name:
        raise PermissionDenied(f"Response '{body.id}' was not returned to this API key; a "
                               f"key may label only its own responses.", param="id",
                               code="not_your_response")
    gold, comment = body.gold, body.comment
    if not settings.include_prompt:
        gold = f"sha256:{text_sha256(gold)}" if gold is not None else None
        comment = f"sha256:{text_sha256(comment)}" if comment is not None else None
    try:
        created, count = await store.add_feedback(canonical, body.label, score=body.score,
                                                  gold=gold, comment=comment,
                                                  key_name=key_name)
    except Exception as exc:
        raise StoreUnavailable(f"The store cannot take the label right now "
                               f"({type(exc).__name__}).") from exc
    return {"object": "feedback", "id": body.id, "label": body.label,
            "created_at": int(created.timestamp()), "labels": count}


def _key_name(request: Request) -> str | None:
    return (request.scope.get("state") or {}).get("key_name")


@router.post("/v1/feedback")
@router.post("/{route_prefix:path}/v1/feedback")  # api_base=http://gw/<prefix>/v1
async def post_feedback(body: FeedbackRequest, request: Request) -> dict:
    store = _store_of(request)
    return await label(store, request.app.state.settings.store, body, _key_name(request))


@router.post("/v1/feedback/bulk")
@router.post("/{route_prefix:path}/v1/feedback/bulk")
async def post_feedback_bulk(request: Request) -> dict:
    """Labels produced offline: a JSONL body, one feedback object per line (blank lines
    skipped). Each line is judged alone, as the single form would; the answer lists
    every line's result (``status`` and the label, or the error) in order."""
    store = _store_of(request)
    settings = request.app.state.settings.store
    key_name = _key_name(request)
    results, stored = [], 0
    for number, line in enumerate((await request.body()).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            body = FeedbackRequest.model_validate_json(line)
            result = {"line": number, "status": 200,
                      **await label(store, settings, body, key_name)}
            stored += 1
        except ValidationError as exc:
            error = validation_error(list(exc.errors()))
            result = {"line": number, "status": error.status, **error.to_body()}
        except HallgateError as exc:
            result = {"line": number, "status": exc.status, **exc.to_body()}
        results.append(result)
    if not results:
        raise InvalidRequest("The body holds no feedback lines; expected JSONL, one "
                             "{\"id\", \"label\"} object per line.")
    return {"object": "list", "data": results, "stored": stored,
            "failed": len(results) - stored}
