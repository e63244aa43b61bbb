"""An OpenAI-compatible upstream that sends interim 1xx responses before each answer.

RFC 9110 §15.2: a server or a middlebox may send one or more 1xx responses (``100
Continue``, ``102 Processing``, ``103 Early Hints``) before the final one, and a client must
skip them. This server does exactly that on every chat request, in the segmentation a test
chooses, and answers with the request's own last user message ("answer to <message>"), so
a test can tell whether each client got the answer to its own request.

It speaks raw HTTP/1.1 over asyncio (a framework would not let it send 1xx responses), in a
thread of its own, with keep-alive and any number of connections at once.
"""

from __future__ import annotations

import asyncio
import json
import threading

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
PROCESSING = b"HTTP/1.1 102 Processing\r\n\r\n"
EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"

# A second, complete answer that no request asked for.
STRAY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"
         b"{}")

# How each answer is cut into writes: a list of segments, each sent in its own write
# after a short pause. "head" and "body" are the final response's parts.
SEGMENTATIONS = {
    "separate": lambda head, body: [CONTINUE, head, body],
    "one-write": lambda head, body: [CONTINUE + head + body],
    "two-interims": lambda head, body: [CONTINUE, EARLY_HINTS, head, body],
    "split-interim": lambda head, body: [CONTINUE[:9], CONTINUE[9:] + PROCESSING[:20],
                                         PROCESSING[20:] + head[:12], head[12:], body],
    "stray-answer-after": lambda head, body: [head + body + STRAY],
}


def _completion(text: str) -> dict:
    return {"id": "chatcmpl-interim", "object": "chat.completion", "created": 0,
            "model": "interim-model",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    obj = {"id": "chatcmpl-interim", "object": "chat.completion.chunk", "created": 0,
           "model": "interim-model",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def answer_parts(body: dict) -> tuple[bytes, bytes]:
    """The final response's head and body for one chat request."""
    question = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
    text = f"answer to {question}"
    if body.get("stream"):
        words = text.split(" ")
        events = [_chunk({"role": "assistant", "content": ""})]
        events += [_chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        events += [_chunk({}, "stop"), b"data: [DONE]\n\n"]
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        return head, _chunked(*events)
    payload = json.dumps(_completion(text)).encode()
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(payload))
    return head, payload


class InterimUpstream:
    """``segmentation``: a key of SEGMENTATIONS; ``pause_s``: between two writes."""

    def __init__(self, segmentation: str = "separate", pause_s: float = 0.03):
        self.segments = SEGMENTATIONS[segmentation]
        self.pause_s = pause_s
        self.requests = 0
        self._handlers: set[asyncio.Task] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> InterimUpstream:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop)
        self._server = started.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handlers.add(task := asyncio.current_task())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = json.loads(await reader.readexactly(length))
                self.requests += 1
                for i, segment in enumerate(self.segments(*answer_parts(body))):
                    if i:
                        await asyncio.sleep(self.pause_s)
                    writer.write(segment)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

