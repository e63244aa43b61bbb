"""The HTTP server under the gateway: uvicorn (uvloop, httptools) with writes coalesced.

uvicorn writes a response's head and its body in two ``transport.write`` calls, so a
short answer leaves in two TCP segments: the client wakes for the head, reads it, sleeps,
and wakes again for the body, and the gateway's first write waits while the woken client
runs. :class:`CoalescingTransport` holds each response's head until the first body bytes
and sends both in one write: a JSON answer whole, or a stream's head with its first words
(``proxy.chat.router.send_stream`` sends the head only once the first chunk is ready).
Later writes go out at once, and a head is never held past the event-loop turn it was
written in. Measured against the build before with bench/ab_c1.py (docs/BENCHMARKS.md,
"Sixth pass").

    uvicorn.run(app, loop="uvloop", http=GatewayHttpProtocol, ...)   # proxy/cli.py
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport that holds a response's head until its first body bytes, and sends
    both in one write. Everything but ``write`` and ``close`` is the wrapped transport's
    own."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._hold_next = False  # the next write is a response head: hold it
        self._held: bytes | None = None

    def hold_head(self) -> None:
        """The next write starts a response (its head): hold it for the body's first write,
        at most until the end of this event-loop turn."""
        self._hold_next = True

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif self._hold_next:
            self._hold_next = False
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`CoalescingTransport`: each request's
    response head is held for its first body bytes, and whatever is held goes out as soon
    as the response is complete (not a loop turn later, after the app's bookkeeping)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.transport.hold_head()

    def on_response_complete(self) -> None:
        self.transport.flush()
        super().on_response_complete()
