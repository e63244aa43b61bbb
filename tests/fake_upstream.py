"""A small OpenAI-compatible upstream for exact assertions and fault injection.

In tests it runs in-process (``FakeUpstream.serve()`` in a thread) and each test scripts
it; ``python -m tests.fake_upstream --port 9001 --latency-ms 20`` runs it alone for the
benchmarks. It answers with a given text and deterministic top-20 logprobs, streams,
optionally ignores ``n``, rejects ``logprobs`` like OpenAI's reasoning models
(``Script.rejects_logprobs``), and injects faults: slowness, 429 with Retry-After, 500,
malformed JSON, a connection dropped mid-stream.

Agent traffic, the OpenAI way: with ``Script.tool_calls`` set, a request that offers
``tools`` is answered with those of the calls whose function it offers (none of them
offered: a call to the first offered function with ``Script.structured`` as arguments,
as a model does for structured output by tool) (``content: null`` unless ``Script.tool_text``,
``finish_reason: "tool_calls"``, no logprobs for the calls; streamed as ``delta.tool_calls``
pieces, parallel calls by index) until the conversation carries a ``tool`` result, which
is answered with text: a scripted two-turn agent exchange. A request with
``response_format`` json_object / json_schema is answered with ``Script.structured``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# What OpenAI's reasoning models answer to a request with logprobs (2025-2026).
REASONING_MODEL_ERROR = {"error": {
    "message": "Unsupported parameter: 'logprobs' is not supported with this model.",
    "type": "invalid_request_error", "param": "logprobs", "code": "unsupported_parameter"}}


@dataclass
class Fault:
    kind: str  # "429" | "500" | "malformed" | "drop" | "slow" | "400"
    retry_after: float | None = None
    delay_s: float = 0.0


@dataclass
class Script:
    text: str = "Paris is the capital of France."
    latency_s: float = 0.0  # before the reply (and before the first chunk)
    honours_n: bool = True  # False: like llama.cpp, always one choice
    logprob: float = -0.05  # chosen token's logprob
    top_k: int = 20  # alternatives per token in the reply
    no_logprobs: bool = False  # like a provider without logprobs: never sends them
    rejects_logprobs: int | None = None  # 400 or 403: like OpenAI's o1/o3/o4-mini, refuse
    # any request that carries `logprobs` or `top_logprobs`
    texts: deque = field(default_factory=deque)  # per-call texts, consumed first
    token_shapes: tuple[tuple[float, float], ...] = ()  # per token (chosen logprob, gap in
    # nats between consecutive alternatives); tokens past the end use (logprob, 1.0). A
    # wide gap (8) reads as confident to HALT, 1.0 as risky: scripts risk rising mid-answer
    token_delay_s: float = 0.0  # between streamed tokens, like a generating model
    tool_calls: tuple[dict, ...] = ()  # ({"name": ..., "arguments": "<JSON>"}, ...): the
    # answer to a request with `tools` whose conversation has no tool result yet
    tool_text: str | None = None  # content beside the tool calls (None: content null)
    structured: str | None = None  # the answer to a request with a JSON response_format
    replies: dict = field(default_factory=dict)  # a recorded corpus replayed: the last user
    # message -> {"content": text, "tokens": [{token, logprob, top_logprobs}]}, answered
    # (non-streaming) with that text and those logprobs, top_logprobs cut to what was asked


@dataclass
class StreamRecord:
    """What one streamed answer did: tokens sent, and whether it ran to its end."""

    total: int  # tokens the answer had
    sent: int = 0  # tokens written before the stream ended
    completed: bool = False  # False: the client went away (or closed) before the end


def token_logprobs(words: list[str], logprob: float, top_k: int,
                   shapes: tuple[tuple[float, float], ...] = (), start: int = 0) -> list[dict]:
    """Deterministic logprobs: the chosen word first, then alternatives ``gap`` nats apart
    (1 unless ``shapes[start + i]`` gives (logprob, gap) for the i-th word)."""
    out = []
    for i, w in enumerate(words):
        lp, gap = shapes[start + i] if start + i < len(shapes) else (logprob, 1.0)
        top = [{"token": w, "logprob": lp, "bytes": None}]
        top += [{"token": f"{w}~{j}", "logprob": lp - gap * (1 + j), "bytes": None}
                for j in range(top_k - 1)]
        out.append({"token": w, "logprob": lp, "bytes": None, "top_logprobs": top})
    return out


class FakeUpstream:
    def __init__(self, script: Script | None = None):
        self.script = script or Script()
        self.faults: deque[Fault] = deque()
        self.requests: list[dict] = []
        self.streams: list[StreamRecord] = []  # one per streamed answer, in order
        self.in_flight = 0  # requests being answered now (non-streaming: until the reply)
        self.max_in_flight = 0  # the most at once since the last reset
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ])

    # --- scripting -------------------------------------------------------------------

    def reset(self) -> None:
        self.script = Script()
        self.faults.clear()
        self.requests.clear()
        self.streams.clear()
        self.max_in_flight = 0

    def fail_next(self, kind: str, times: int = 1, **kw) -> None:
        self.faults.extend(Fault(kind, **kw) for _ in range(times))

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- HTTP ------------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def chat(self, request: Request) -> Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._chat(request)
        finally:
            self.in_flight -= 1

    async def _chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.requests.append(body)
        fault = self.faults.popleft() if self.faults else None
        if fault and fault.kind == "slow":
            await asyncio.sleep(fault.delay_s)
        if self.script.latency_s:
            await asyncio.sleep(self.script.latency_s)
        if fault and fault.kind in ("429", "500", "400"):
            headers = {"retry-after": str(fault.retry_after)} if fault.retry_after else {}
            err = {"error": {"message": f"injected {fault.kind}", "type": "fake"}}
            return JSONResponse(err, status_code=int(fault.kind), headers=headers)
        if self.script.rejects_logprobs and ("logprobs" in body or "top_logprobs" in body):
            return JSONResponse(REASONING_MODEL_ERROR, status_code=self.script.rejects_logprobs)
        if fault and fault.kind == "malformed":
            return Response(b'{"id": "broken", "choices": [', media_type="application/json")
        n = body.get("n", 1) if self.script.honours_n else 1
        if self._calls_tools(body):
            if body.get("stream"):
                return StreamingResponse(self._stream_tool_calls(body),
                                         media_type="text/event-stream")
            return JSONResponse(self._tool_call_completion(body))
        reply = self.script.replies.get(_last_user(body)) if self.script.replies else None
        if reply is not None and not body.get("stream"):
            return JSONResponse(self._recorded(body, reply))
        texts = [self._next_text(body) for _ in range(n)]
        if body.get("stream"):
            return StreamingResponse(self._stream(body, texts, drop=fault is not None and
                                                  fault.kind == "drop"),
                                     media_type="text/event-stream")
        return JSONResponse(self._completion(body, texts))

    def _next_text(self, body: dict) -> str:
        fmt = (body.get("response_format") or {}).get("type")
        if fmt in ("json_object", "json_schema") and self.script.structured is not None:
            return self.script.structured
        return self.script.texts.popleft() if self.script.texts else self.script.text

    def _calls_tools(self, body: dict) -> bool:
        """The scripted calls answer a request offering tools, until a tool result is in."""
        messages = body.get("messages") or []
        answered = any(m.get("role") == "tool" for m in messages)
        return bool(self.script.tool_calls and body.get("tools") and not answered)

    def _scripted_calls(self, body: dict) -> list[dict]:
        """The scripted calls of offered functions, else one call of the first offered."""
        offered = [(t.get("function") or {}).get("name") for t in body.get("tools") or ()
                   if t.get("type") == "function"]
        calls = [c for c in self.script.tool_calls if c["name"] in offered]
        if not calls and offered:
            calls = [{"name": offered[0], "arguments": self.script.structured or "{}"}]
        return calls

    def _tool_call_completion(self, body: dict) -> dict:
        text = self.script.tool_text
        calls = [{"id": f"call_{i}", "type": "function",
                  "function": {"name": c["name"], "arguments": c["arguments"]}}
                 for i, c in enumerate(self._scripted_calls(body))]
        logprobs = None
        if self._wants_logprobs(body):  # OpenAI: the calls carry no logprobs
            content = (token_logprobs(_words(text), self.script.logprob, self._top_k(body))
                       if text else None)
            logprobs = {"content": content, "refusal": None}
        message = {"role": "assistant", "content": text, "tool_calls": calls}
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                             "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}}

    async def _stream_tool_calls(self, body: dict):
        """The calls as OpenAI streams them: a role chunk (content null), each call's id and
        name with empty arguments, then the arguments in pieces, then the finish."""
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model")}

        def chunk(delta: dict, finish: str | None = None, logprobs: dict | None = None):
            return _sse({**base, "choices": [{"index": 0, "delta": delta,
                                              "logprobs": logprobs, "finish_reason": finish}]})

        yield chunk({"role": "assistant", "content": None})
        for j, word in enumerate(_words(self.script.tool_text or "")):
            yield self._token_chunk(base, body, 0, word, j, self._top_k(body))
        for i, call in enumerate(self._scripted_calls(body)):
            yield chunk({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                         "function": {"name": call["name"],
                                                      "arguments": ""}}]})
            args = call["arguments"]
            for start in range(0, len(args), 8):
                if self.script.token_delay_s:
                    await asyncio.sleep(self.script.token_delay_s)
                yield chunk({"tool_calls": [{"index": i, "function": {
                    "arguments": args[start:start + 8]}}]})
        yield chunk({}, "tool_calls")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield _sse({**base, "choices": [], "usage": {
                "prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}})
        yield b"data: [DONE]\n\n"

    def _top_k(self, body: dict) -> int:
        return min(self.script.top_k, body.get("top_logprobs") or 0) if body.get(
            "logprobs") else 0

    def _wants_logprobs(self, body: dict) -> bool:
        return bool(body.get("logprobs")) and not self.script.no_logprobs

    def _recorded(self, body: dict, reply: dict) -> dict:
        """The recorded answer to this prompt, with its recorded logprobs."""
        top_k = self._top_k(body)
        tokens = [{**t, "top_logprobs": (t.get("top_logprobs") or [])[:top_k]}
                  for t in reply["tokens"]]
        completion = self._completion(body, [reply["content"]])
        completion["choices"][0]["logprobs"] = ({"content": tokens}
                                                if self._wants_logprobs(body) else None)
        completion["usage"]["completion_tokens"] = len(tokens)
        completion["usage"]["total_tokens"] = 10 + len(tokens)
        return completion

    def _completion(self, body: dict, texts: list[str]) -> dict:
        top_k = self._top_k(body)
        choices = []
        for i, text in enumerate(texts):
            words = _words(text)
            logprobs = ({"content": token_logprobs(words, self.script.logprob, top_k,
                                                   self.script.token_shapes)}
                        if self._wants_logprobs(body) else None)
            choices.append({"index": i, "message": {"role": "assistant", "content": text},
                            "logprobs": logprobs, "finish_reason": "stop"})
        completion_tokens = sum(len(_words(t)) for t in texts)
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"), "choices": choices,
                "usage": {"prompt_tokens": 10, "completion_tokens": completion_tokens,
                          "total_tokens": 10 + completion_tokens}}

    async def _stream(self, body: dict, texts: list[str], drop: bool):
        top_k = self._top_k(body)
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model")}
        for i, text in enumerate(texts):
            words = _words(text)
            first = {**base, "choices": [{"index": i, "delta": {"role": "assistant",
                                                               "content": ""},
                                          "logprobs": None, "finish_reason": None}]}
            yield _sse(first)
            record = StreamRecord(total=len(words))
            self.streams.append(record)
            for j, w in enumerate(words):  # a client that leaves cancels this generator
                if drop and j == max(1, len(words) // 2):
                    raise ConnectionError("injected drop")  # uvicorn cuts the connection
                if self.script.token_delay_s:
                    await asyncio.sleep(self.script.token_delay_s)
                yield self._token_chunk(base, body, i, w, j, top_k)
                record.sent = j + 1
            record.completed = True
            yield _sse({**base, "choices": [{"index": i, "delta": {}, "logprobs": None,
                                             "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            n_tokens = sum(len(_words(t)) for t in texts)
            yield _sse({**base, "choices": [], "usage": {
                "prompt_tokens": 10, "completion_tokens": n_tokens,
                "total_tokens": 10 + n_tokens}})
        yield b"data: [DONE]\n\n"

    def _token_chunk(self, base: dict, body: dict, index: int, word: str, position: int,
                     top_k: int) -> bytes:
        lp = ({"content": token_logprobs([word], self.script.logprob, top_k,
                                         self.script.token_shapes, position)}
              if self._wants_logprobs(body) else None)
        return _sse({**base, "choices": [{"index": index, "delta": {"content": word},
                                          "logprobs": lp, "finish_reason": None}]})

    # --- serving ---------------------------------------------------------------------

    def serve_in_thread(self, port: int = 0) -> FakeUpstream:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="error",
                                lifespan="off")
        self._server = server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True, name="fake-upstream")
        thread.start()
        while not server.started:
            time.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


def _last_user(body: dict) -> str | None:
    for message in reversed(body.get("messages") or ()):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return None


def _words(text: str) -> list[str]:
    """Split into word tokens that join back to ``text`` (a leading space per word)."""
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)] if text else []


def _sse(obj: dict) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--token-delay-ms", type=float, default=0.0,
                        help="between streamed tokens (a generating model)")
    parser.add_argument("--text", default=Script.text, help="the answer")
    args = parser.parse_args()
    fake = FakeUpstream(Script(text=args.text, latency_s=args.latency_ms / 1000.0,
                               token_delay_s=args.token_delay_ms / 1000.0))
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="error",
                lifespan="off", access_log=False)


if __name__ == "__main__":
    main()

