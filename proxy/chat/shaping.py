"""Pure transformations of OpenAI response dicts: fan-out merging, client shaping,
abstention chunks. No I/O here, so each piece is easy to test on its own."""

from __future__ import annotations

import time
import uuid

import orjson

from proxy.chat.gate_session import Answer, GateOutcome
from proxy.chat.tool_calls import ToolCallAccumulator
from proxy.logprobs import trim_choice_logprobs


def answers_from_response(resp: dict) -> list[Answer]:
    out = []
    for choice in resp.get("choices") or ():
        message = choice.get("message") or {}
        logprobs = choice.get("logprobs")
        tokens = logprobs.get("content") if logprobs else None
        out.append(Answer(index=choice.get("index", len(out)),
                          text=message.get("content") or "", tokens=tokens,
                          finish_reason=choice.get("finish_reason"),
                          tool_calls=message.get("tool_calls") or None))
    return out


def shape_response(resp: dict, model: str, top_k: int | None, outcome: GateOutcome) -> dict:
    """Apply the gate's outcome and the client's logprobs request to a JSON response."""
    resp["model"] = model
    for choice in resp.get("choices") or ():
        message = choice.setdefault("message", {"role": "assistant"})
        if outcome.replacement is not None:
            message["content"] = None if outcome.refusal_only else outcome.replacement
            choice["logprobs"] = None
            if outcome.abstain:
                message["refusal"] = outcome.replacement
                message.pop("tool_calls", None)
                choice["finish_reason"] = "stop"
        trim_choice_logprobs(choice, top_k)
    if outcome.metadata is not None:
        resp["hallgate"] = outcome.metadata
    return resp


def shape_chunk(chunk: dict, model: str, top_k: int | None) -> dict:
    chunk["model"] = model
    for choice in chunk.get("choices") or ():
        if "logprobs" in choice or top_k is None:
            trim_choice_logprobs(choice, top_k)
    return chunk


def replacement_chunks(template: dict, indices: list[int], outcome: GateOutcome) -> list[dict]:
    """The chunks that stand in for a buffered stream whose content was replaced."""
    base = {k: template.get(k) for k in ("id", "object", "created", "model")}
    base["object"] = "chat.completion.chunk"
    delta = {"role": "assistant"}
    if not outcome.refusal_only:
        delta["content"] = outcome.replacement
    if outcome.abstain:
        delta["refusal"] = outcome.replacement
    chunks = [{**base, "choices": [{"index": i, "delta": delta, "logprobs": None,
                                    "finish_reason": None}]} for i in indices]
    chunks.append({**base, "choices": [{"index": i, "delta": {}, "logprobs": None,
                                        "finish_reason": "stop"} for i in indices]})
    return chunks


def refusal_chunks(template: dict, text: str, *, with_role: bool) -> list[dict]:
    """The end of a cut stream (choice 0): the abstention as ``delta.refusal`` (no
    ``content``: what was released stays as sent), then ``finish_reason: stop``, like a
    buffered abstention. ``with_role``: nothing was released yet, so the role goes first."""
    base = {k: template.get(k) for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    delta = {"role": "assistant", "refusal": text} if with_role else {"refusal": text}
    return [{**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                  "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                  "finish_reason": "stop"}]}]


def verdict_chunk(template: dict, metadata: dict) -> dict:
    """The final chunk of a gated stream: no choices, the ``hallgate`` decision."""
    return {"id": template.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk", "created": template.get("created") or
            int(time.time()), "model": template.get("model"), "choices": [],
            "hallgate": metadata}


def sse(data: dict | str) -> bytes:
    """One server-sent event: ``data: <JSON>`` and a blank line (orjson: every chunk of a
    stream passes through here)."""
    payload = data.encode() if isinstance(data, str) else orjson.dumps(data)
    return b"data: " + payload + b"\n\n"


DONE_EVENT = sse("[DONE]")  # a chat stream's last event


def carries_text(chunk: dict) -> bool:
    """Whether any choice of a stream chunk has content, a refusal or a finish reason
    (the opening chunk of most upstreams carries only the role)."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("refusal") or delta.get("tool_calls") \
                or choice.get("finish_reason") or choice.get("logprobs"):
            return True
    return False


class StreamAccumulator:
    """Rebuilds each choice's answer (text, token logprobs, finish reason, tool calls)
    from chunks."""

    def __init__(self) -> None:
        self.text: dict[int, list[str]] = {}
        self.tools: dict[int, ToolCallAccumulator] = {}
        self.logprobs: dict[int, list[dict]] = {}
        self.saw_logprobs: dict[int, bool] = {}
        self.finish: dict[int, str | None] = {}

    def add(self, chunk: dict) -> None:
        for choice in chunk.get("choices") or ():
            i = choice.get("index", 0)
            self.text.setdefault(i, [])
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.text[i].append(delta["content"])
            if delta.get("tool_calls"):
                self.tools.setdefault(i, ToolCallAccumulator()).add(delta["tool_calls"])
            logprobs = choice.get("logprobs")
            if logprobs and logprobs.get("content") is not None:
                self.saw_logprobs[i] = True
                self.logprobs.setdefault(i, []).extend(logprobs["content"])
            if choice.get("finish_reason"):
                self.finish[i] = choice["finish_reason"]

    def answers(self) -> list[Answer]:
        return [Answer(index=i, text="".join(parts),
                       tokens=self.logprobs.get(i) if self.saw_logprobs.get(i) else None,
                       finish_reason=self.finish.get(i),
                       tool_calls=self.tools[i].calls() if i in self.tools else None)
                for i, parts in sorted(self.text.items())]
