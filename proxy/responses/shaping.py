"""Pure translations from chat-completion dicts to Responses API objects. No I/O.

    chat.completion          -> response            (response_object)
    chat logprobs.content    -> output_text.logprobs (output_logprobs)
    chat usage               -> response usage       (response_usage)

An abstention becomes a ``refusal`` content part; tool calls become ``function_call``
output items after the message (which is left out when the answer has no text); the
``hallgate`` decision rides on the response object as it does on a chat completion.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from proxy.responses.schemas import ResponsesRequest
from proxy.responses.tools import function_call_item
from proxy.store.ids import responses_id


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _token_bytes(entry: dict) -> list[int]:
    return entry.get("bytes") or list(str(entry.get("token", "")).encode())


def output_logprobs(content: list[dict] | None) -> list[dict]:
    """Chat ``logprobs.content`` (already trimmed to the client's depth) in Responses form."""
    return [{"token": t.get("token", ""), "logprob": t.get("logprob", 0.0),
             "bytes": _token_bytes(t),
             "top_logprobs": [{"token": a.get("token", ""), "logprob": a.get("logprob", 0.0),
                               "bytes": _token_bytes(a)}
                              for a in t.get("top_logprobs") or ()]}
            for t in content or ()]


def response_usage(usage: dict | None) -> dict | None:
    if not usage:
        return None
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(
        usage.get("completion_tokens") or 0)
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": int(usage.get("total_tokens") or prompt + completion)}


def text_part(text: str, logprobs: list[dict] | None) -> dict:
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    if logprobs is not None:
        part["logprobs"] = logprobs
    return part


def refusal_part(text: str) -> dict:
    return {"type": "refusal", "refusal": text}


def message_item(item_id: str, content: list[dict], status: str = "completed") -> dict:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": content}


def skeleton(req: ResponsesRequest, response_id: str, created_at: int,
             status: str = "in_progress") -> dict:
    """The response object before any output: what ``response.created`` carries."""
    return {"id": response_id, "object": "response", "created_at": created_at,
            "status": status, "background": False, "error": None,
            "incomplete_details": None, "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens, "metadata": req.metadata or {},
            "model": req.model, "output": [],
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": None, "store": False, "temperature": req.temperature,
            "text": req.text or {"format": {"type": "text"}},
            "tool_choice": req.tool_choice or ("auto" if req.tools else "none"),
            "tools": req.tools or [],
            "top_logprobs": req.top_logprobs, "top_p": req.top_p, "truncation": "disabled",
            "usage": None, "user": req.user}


def finish(response: dict, items: list[dict], finish_reason: str | None, usage: dict | None,
           hallgate: dict | None) -> dict:
    """Fill in output, status and usage: a length stop is ``incomplete``, as OpenAI does."""
    response["output"] = items
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    else:
        response["status"] = "completed"
        response["completed_at"] = int(time.time())
    response["usage"] = response_usage(usage)
    if hallgate is not None:
        response["hallgate"] = hallgate
    return response


def content_parts(message: dict, logprobs: dict | None, wants_logprobs: bool) -> list[dict]:
    """A chat message as Responses content: a refusal part when the gate abstained."""
    if message.get("refusal"):
        return [refusal_part(message["refusal"])]
    lp = output_logprobs((logprobs or {}).get("content")) if wants_logprobs else None
    return [text_part(message.get("content") or "", lp)]


def response_object(req: ResponsesRequest, chat: dict) -> dict:
    """A finished chat completion (already gated and shaped) as a ``response``."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    calls = message.get("tool_calls") or []
    response = skeleton(req, responses_id(chat.get("id")) or new_id("resp"),
                        int(chat.get("created") or time.time()))
    status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
    items = []
    if message.get("content") or message.get("refusal") or not calls:
        parts = content_parts(message, choice.get("logprobs"), req.wants_logprobs())
        items.append(message_item(new_id("msg"), parts, status))
    items += [function_call_item(new_id("fc"), call) for call in calls]
    return finish(response, items, choice.get("finish_reason"), chat.get("usage"),
                  chat.get("hallgate"))
