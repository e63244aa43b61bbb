"""proxy/server.py: uvicorn's own httptools protocol on the coalescing transport.

Each test feeds a real request to ``GatewayHttpProtocol`` (uvicorn's parser, its ASGI
cycle, a small ASGI app) and records the writes that reach the socket's transport: the
transport is the only stand-in, so what is counted is what would be sent."""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.server import ServerState

from proxy.server import GatewayHttpProtocol

REQUEST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


class RecordingTransport(asyncio.Transport):
    """A socket's transport that keeps what is written, one entry per write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(
            name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def serve(app, transport: RecordingTransport) -> None:
    """One request through the protocol on ``transport``; returns once the app is done
    and the event loop has had one more turn (for anything still held)."""
    config = uvicorn.Config(app, http=GatewayHttpProtocol, lifespan="off", log_level="error")
    config.load()
    protocol = GatewayHttpProtocol(config=config, server_state=ServerState(), app_state={},
                                   _loop=asyncio.get_running_loop())
    protocol.connection_made(transport)
    protocol.data_received(REQUEST)
    await asyncio.gather(*protocol.tasks)
    await asyncio.sleep(0)
    protocol.connection_lost(None)


def start(headers=()) -> dict:
    return {"type": "http.response.start", "status": 200, "headers": list(headers)}


def body(data: bytes, more: bool = False) -> dict:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def test_a_json_answer_leaves_in_one_write():
    async def app(scope, receive, send):
        await receive()
        await send(start([(b"content-length", b"12")]))
        await send(body(b'{"ok": true}'))

    transport = RecordingTransport()
    await serve(app, transport)
    assert len(transport.writes) == 1, transport.writes
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b'\r\n\r\n{"ok": true}')


async def test_a_stream_head_goes_with_its_first_chunk_and_later_chunks_at_once():
    transport = RecordingTransport()
    later = asyncio.Event()
    sent_after: list[int] = []  # writes on the socket after each chunk's send

    async def app(scope, receive, send):
        await receive()
        await send(start([(b"content-type", b"text/event-stream")]))
        await send(body(b"data: 1\n\n", more=True))
        sent_after.append(len(transport.writes))
        await later.wait()
        await send(body(b"data: 2\n\n", more=True))
        sent_after.append(len(transport.writes))
        await send(body(b""))

    task = asyncio.ensure_future(serve(app, transport))
    await asyncio.sleep(0.01)
    later.set()
    await task
    assert sent_after == [1, 2], "a chunk waited after its send"
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"data: 1\n\n\r\n")
    assert b"data: 2" in transport.writes[1]


async def test_a_head_is_not_held_past_its_event_loop_turn():
    transport = RecordingTransport()
    written_while_waiting: list[int] = []

    async def app(scope, receive, send):
        await receive()
        await send(start([(b"content-type", b"text/event-stream")]))
        await asyncio.sleep(0.02)  # the first chunk is slow to come
        written_while_waiting.append(len(transport.writes))
        await send(body(b"data: 1\n\n"))

    await serve(app, transport)
    assert written_while_waiting == [1], "the head waited for a body that was not ready"
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"data: 1" in transport.writes[1]
