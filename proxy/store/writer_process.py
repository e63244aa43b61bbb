"""The store's writer process: frames in, rows into the database, one ack per batch out.

    gateway (ExchangeStore)                      this process
    -----------------------                      ------------
    stdin:  frame, frame, ...         ------>    reader: frames -> a bounded queue
            (4-byte length + JSON)               batcher: up to batch_size frames, or what
                                                 came within flush_interval_s -> rows
                                                 (records.row_from_frame) -> one INSERT
    stdout: {"n", "written", "error",  <------   one ack line per batch
             "row_error"}

The first frame is the settings: ``{"url", "include_prompt", "batch_size",
"flush_interval_s"}``; the process answers ``{"ready": true}`` once its engine is made.
The gateway hands over at most two batches it has no ack for, so a slow database leaves
the rest in the gateway's queue, which fills and drops (counted there). At the end of its input
(the gateway closed it, or died) it writes what it has read and exits: a gateway killed
with ``kill -9`` loses only what it had not yet handed over.

It imports neither the gateway nor torch: SQLAlchemy, the driver and proxy.store's pure
parts only (``python -m proxy.store.writer_process``; the gateway starts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import sys
from typing import Any

import orjson
from sqlalchemy import JSON, insert

from proxy.store.database import create_engine, encode
from proxy.store.models import Exchange
from proxy.store.records import row_from_frame

HEADER = struct.Struct("<I")  # a frame's length in bytes
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux (Python 3.10+ names it)
PIPE_BYTES = 1 << 20  # the input pipe's size: Linux's default limit for it
NICE = 10  # the process's scheduling niceness, above the gateway's
READ_LIMIT = 2 ** 31  # a frame may be as long as an include_prompt request
JSON_COLUMNS = tuple(c.name for c in Exchange.__table__.columns if isinstance(c.type, JSON))


def frame(payload: bytes) -> bytes:
    """``payload`` with its length in front (what the gateway writes to this process)."""
    return HEADER.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's payload; None at the end of the input."""
    try:
        (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None


def build_rows(frames: list[bytes], include_prompt: bool) -> tuple[list[dict], str | None]:
    """The rows of a batch's frames (their JSON columns encoded once, here) and the first
    error of a frame that could not become a row (that frame is left out)."""
    rows, error = [], None
    for payload in frames:
        try:
            row = row_from_frame(payload, include_prompt)
        except Exception as exc:  # a frame that cannot be a row is dropped, not the batch
            error = error or repr(exc)
            continue
        for column in JSON_COLUMNS:
            if row[column] is not None:
                row[column] = encode(row[column])
        rows.append(row)
    return rows, error


class Writer:
    def __init__(self, settings: dict[str, Any]):
        self.engine = create_engine(settings["url"])
        self.include_prompt = bool(settings["include_prompt"])
        self.batch_size = int(settings["batch_size"])
        self.flush_interval_s = float(settings["flush_interval_s"])
        self.frames: asyncio.Queue[bytes | None] = asyncio.Queue()  # bounded by the gateway

    async def read(self, reader: asyncio.StreamReader) -> None:
        """Frames into the queue until the input ends (then None)."""
        while (payload := await read_frame(reader)) is not None:
            await self.frames.put(payload)
        await self.frames.put(None)

    async def batch(self) -> tuple[list[bytes], bool]:
        """The next batch of frames, and whether the input has ended."""
        loop = asyncio.get_running_loop()
        first = await self.frames.get()
        if first is None:
            return [], True
        frames = [first]
        deadline = loop.time() + self.flush_interval_s
        while len(frames) < self.batch_size:
            left = deadline - loop.time()
            try:
                payload = (self.frames.get_nowait() if left <= 0 or not self.frames.empty()
                           else await asyncio.wait_for(self.frames.get(), left))
            except (asyncio.QueueEmpty, TimeoutError):
                break
            if payload is None:
                return frames, True
            frames.append(payload)
        return frames, False

    async def write(self, frames: list[bytes]) -> dict:
        """Write a batch in one transaction; its ack."""
        rows, row_error = build_rows(frames, self.include_prompt)
        written, error = 0, None
        if rows:
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(insert(Exchange), rows)
                written = len(rows)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        return {"n": len(frames), "written": written, "error": error, "row_error": row_error}

    async def run(self, reader: asyncio.StreamReader) -> None:
        reading = asyncio.create_task(self.read(reader))
        try:
            ended = False
            while not ended:
                frames, ended = await self.batch()
                if frames:
                    ack(await self.write(frames))
        finally:
            reading.cancel()
            await self.engine.dispose()


def ack(message: dict) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


async def main() -> None:
    with contextlib.suppress(OSError):  # room for several writes of the gateway at once:
        # with the default 64 KiB its writes went out in parts, at 4x the CPU per exchange
        fcntl.fcntl(sys.stdin.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    settings = await read_frame(reader)
    if settings is None:  # the gateway went before it said anything
        return
    writer = Writer(orjson.loads(settings))
    ack({"ready": True})
    await writer.run(reader)


if __name__ == "__main__":
    # background work: on a busy machine the gateway's own threads go first (the writer
    # catches up when they idle; if it never does, the gateway's queue drops and counts)
    os.nice(NICE)
    # Ctrl-C reaches the whole process group: the gateway shuts down and closes this
    # process's input, which then writes what it has and exits
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(main())
