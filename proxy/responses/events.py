"""Chat-completion chunks in, Responses API stream events out.

The event sequence the official SDK's typed stream (and its ``responses.stream()``
accumulator) expects, for the message the gateway produces and the function calls after
it:

    response.created, response.in_progress
    response.output_item.added, response.content_part.added
    response.output_text.delta*    | response.refusal.delta    (the gate abstained)
    response.output_text.done      | response.refusal.done
    response.content_part.done, response.output_item.done
    per tool call (chat ``delta.tool_calls``), one ``function_call`` item:
        response.output_item.added, response.function_call_arguments.delta*,
        response.function_call_arguments.done, response.output_item.done
    response.completed             | response.incomplete (max_output_tokens)
                                   | error + response.failed (the stream broke)

An answer made only of tool calls has no message item.

A chunk whose delta carries ``refusal`` is the gate's abstention (buffered mode), so it
opens a refusal part; the ``hallgate`` verdict chunk and the usage chunk of the chat
stream land on the final response object.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator, Iterator

from proxy.responses import shaping
from proxy.responses import tools as fn
from proxy.responses.schemas import ResponsesRequest


def sse_event(event: dict) -> bytes:
    return (f"event: {event['type']}\n"
            f"data: {json.dumps(event, separators=(',', ':'))}\n\n").encode()


async def chat_chunks(body: AsyncIterator[bytes]) -> AsyncIterator[dict]:
    """The JSON payloads of a chat SSE byte stream, up to ``[DONE]``."""
    buffer = b""
    async for piece in body:
        buffer += piece
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            for line in event.splitlines():
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                yield json.loads(data)


class ResponseStream:
    """Turns one gated chat stream into Responses events (dicts, numbered in order)."""

    def __init__(self, req: ResponsesRequest, response_id: str | None = None):
        self.req = req
        self.seq = 0
        self.response = shaping.skeleton(req, response_id or shaping.new_id("resp"),
                                         int(time.time()))
        self.items: list[dict] = []  # finished output items, in output order
        self.item_id = shaping.new_id("msg")
        self.message_index: int | None = None  # output index of the message, once open
        self.kind: str | None = None  # "text" | "refusal" once the part is open
        self.parts: list[str] = []
        self.logprobs: list[dict] = []
        self.call: dict | None = None  # the function_call item being streamed
        self.call_index: int | None = None  # its chat tool-call index
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.hallgate: dict | None = None

    def _event(self, type_: str, **fields) -> dict:
        event = {"type": type_, "sequence_number": self.seq, **fields}
        self.seq += 1
        return event

    def _where(self) -> dict:
        return {"item_id": self.item_id, "output_index": self.message_index,
                "content_index": 0}

    def start(self) -> Iterator[dict]:
        yield self._event("response.created", response=copy.deepcopy(self.response))
        yield self._event("response.in_progress", response=copy.deepcopy(self.response))

    def add(self, chunk: dict) -> Iterator[dict]:
        if chunk.get("hallgate") is not None:
            self.hallgate = chunk["hallgate"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) == 0:
                yield from self._add_choice(choice)

    def _add_choice(self, choice: dict) -> Iterator[dict]:
        delta = choice.get("delta") or {}
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        if delta.get("refusal"):
            yield from self._open("refusal")
            self.parts.append(delta["refusal"])
            yield self._event("response.refusal.delta", **self._where(),
                              delta=delta["refusal"])
        elif delta.get("content") and self.kind != "refusal" and self.call is None:
            yield from self._open("text")
            lp = shaping.output_logprobs((choice.get("logprobs") or {}).get("content")) \
                if self.req.wants_logprobs() else []
            self.parts.append(delta["content"])
            self.logprobs.extend(lp)
            yield self._event("response.output_text.delta", **self._where(),
                              delta=delta["content"], logprobs=lp)
        for piece in delta.get("tool_calls") or ():
            yield from self._add_call_piece(piece)

    def _open(self, kind: str) -> Iterator[dict]:
        if self.kind is not None:
            return
        self.kind = kind
        self.message_index = len(self.items)
        empty = shaping.refusal_part("") if kind == "refusal" else shaping.text_part("", [])
        yield self._event("response.output_item.added", output_index=self.message_index,
                          item=shaping.message_item(self.item_id, [], "in_progress"))
        yield self._event("response.content_part.added", **self._where(), part=empty)

    # --- function calls ----------------------------------------------------------------

    def _add_call_piece(self, piece: dict) -> Iterator[dict]:
        index = piece.get("index", 0)
        function = piece.get("function") or {}
        if self.call is None or index != self.call_index:
            yield from self._close_message()
            yield from self._close_call()
            self.call_index = index
            self.call = fn.function_call_item(shaping.new_id("fc"), {
                "id": piece.get("id"), "function": {"name": function.get("name") or ""}},
                status="in_progress")
            yield self._event("response.output_item.added", output_index=len(self.items),
                              item=copy.deepcopy(self.call))
        elif function.get("name"):
            self.call["name"] += function["name"]
        if function.get("arguments"):
            self.call["arguments"] += function["arguments"]
            yield self._event("response.function_call_arguments.delta",
                              item_id=self.call["id"], output_index=len(self.items),
                              delta=function["arguments"])

    def _close_call(self) -> Iterator[dict]:
        if self.call is None:
            return
        call, self.call = self.call, None
        call["status"] = "completed"
        where = {"item_id": call["id"], "output_index": len(self.items)}
        yield self._event("response.function_call_arguments.done", **where,
                          name=call["name"], arguments=call["arguments"])
        yield self._event("response.output_item.done", output_index=len(self.items),
                          item=call)
        self.items.append(call)

    # --- the message -------------------------------------------------------------------

    def _final_part(self) -> dict:
        text = "".join(self.parts)
        if self.kind == "refusal":
            return shaping.refusal_part(text)
        return shaping.text_part(text, self.logprobs if self.req.wants_logprobs() else None)

    def _close_message(self) -> Iterator[dict]:
        if self.kind is None or self.message_index is None \
                or self.message_index < len(self.items):
            return
        part = self._final_part()
        if self.kind == "refusal":
            yield self._event("response.refusal.done", **self._where(),
                              refusal=part["refusal"])
        else:
            yield self._event("response.output_text.done", **self._where(), text=part["text"],
                              logprobs=part.get("logprobs") or [])
        yield self._event("response.content_part.done", **self._where(), part=part)
        status = "incomplete" if self.finish_reason == "length" else "completed"
        item = shaping.message_item(self.item_id, [part], status)
        yield self._event("response.output_item.done", output_index=self.message_index,
                          item=item)
        self.items.append(item)

    def close(self) -> Iterator[dict]:
        yield from self._close_call()
        if not self.items:
            yield from self._open("text")  # an empty answer is still one (empty) message
        yield from self._close_message()
        response = shaping.finish(self.response, self.items, self.finish_reason, self.usage,
                                  self.hallgate)
        yield self._event(f"response.{response['status']}", response=response)

    def fail(self, error: dict) -> Iterator[dict]:
        """The chat stream ended with an error chunk: an ``error`` event, then failed."""
        code = error.get("code") or error.get("type") or "server_error"
        message = error.get("message") or "The stream failed."
        yield self._event("error", code=code, message=message, param=error.get("param"))
        self.response.update(status="failed", error={"code": "server_error",
                                                     "message": message})
        yield self._event("response.failed", response=self.response)


async def response_events(req: ResponsesRequest, body: AsyncIterator[bytes],
                          response_id: str | None = None) -> AsyncIterator[bytes]:
    """The Responses SSE stream for a chat stream plan's body (``response_id``: the
    response's id; a fresh one when None)."""
    stream = ResponseStream(req, response_id)
    try:
        for event in stream.start():
            yield sse_event(event)
        async for chunk in chat_chunks(body):
            if chunk.get("error"):
                for event in stream.fail(chunk["error"]):
                    yield sse_event(event)
                return
            for event in stream.add(chunk):
                yield sse_event(event)
        for event in stream.close():
            yield sse_event(event)
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:  # a client that went away stops the chat stream too
            await aclose()
