"""proxy.chat.router.send_stream: the head goes with the first chunk, whatever comes
first (a chunk, the end, an error), and every stream ends with a complete response."""

from __future__ import annotations

import asyncio

import orjson

from proxy.chat.router import send_stream
from proxy.chat.shaping import DONE_EVENT


async def run(body, sent: list[dict] | None = None) -> list[dict]:
    """send_stream over ``body``; every ASGI message it sends lands in ``sent``."""
    sent = [] if sent is None else sent

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        await asyncio.sleep(3600)  # the client never leaves
        return {"type": "http.disconnect"}

    await send_stream(send, receive, {"x-hallgate-route": "r"}, body)
    return sent


def kinds(sent: list[dict]) -> list[str]:
    return [m["type"].rsplit(".", 1)[1] for m in sent]


async def test_the_head_waits_for_the_first_chunk():
    sent: list[dict] = []
    sent_before_first_chunk: list[int] = []

    async def body():
        await asyncio.sleep(0.01)  # the first words take a while
        sent_before_first_chunk.append(len(sent))
        yield b"data: 1\n\n"
        yield DONE_EVENT

    await run(body(), sent)
    assert sent_before_first_chunk == [0], "the head left before the first chunk"
    assert kinds(sent) == ["start", "body", "body"]
    assert (b"x-hallgate-route", b"r") in sent[0]["headers"]
    assert sent[-1]["more_body"] is False and sent[-1]["body"] == DONE_EVENT


async def test_an_empty_body_still_gets_a_head_and_an_end():
    async def body():
        return
        yield  # an async generator that yields nothing

    sent = await run(body())
    assert kinds(sent) == ["start", "body"]
    assert sent[0]["status"] == 200 and sent[-1]["more_body"] is False


async def test_a_body_that_fails_before_its_first_chunk_ends_with_an_error_event():
    async def body():
        raise RuntimeError("upstream gone")
        yield b""

    sent = await run(body())
    assert kinds(sent) == ["start", "body"]
    assert sent[-1]["more_body"] is False
    event = orjson.loads(sent[-1]["body"].removeprefix(b"data: "))
    assert set(event["error"]) == {"message", "type", "param", "code"}
