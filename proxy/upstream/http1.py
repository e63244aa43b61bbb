"""A small HTTP/1.1 client for the upstream hop: keep-alive pool, httptools parser.

Why not aiohttp (or httpx): on this hop the client's own Python is what a request pays
for. Forwarding one request through a bare uvicorn app cost +1.18 ms at concurrency 1
with aiohttp and +0.45 ms with this client (bench/hop_floor.py; a raw TCP relay: +0.20),
and the issue's budget for the whole gateway is 1 ms. It does only what the upstream hop
needs: POST a JSON body, read a response whole or as it streams, over http or https,
reusing connections. The parsing is httptools (llhttp, the parser uvicorn uses).

    client = HttpClient()
    resp = await client.post(url, body, headers, timeout=30)       # whole response
    stream = await client.open(url, body, headers, timeout=30)     # status and headers
    async for line in stream.lines(read_timeout=30): ...           # then the body
    stream.close()                                                 # reuse or hang up

A connection goes back to the pool only after a complete final response that allows
keep-alive, with nothing unread: interim 1xx answers (100 Continue, 103 Early Hints) are
skipped, and any byte that arrives when no request is waiting for it closes the
connection instead of being read as the next request's answer. A stream closed early
hangs up, which tells a generating upstream to stop. A request that
fails on a reused connection before any byte of the answer came back is sent once more on
a new connection: the server may have closed the idle connection as we wrote to it.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

MAX_BUFFERED = 1 << 20  # bytes a stream holds before it stops reading from the socket
IDLE_KEEPALIVE_S = 30.0  # an idle pooled connection older than this is closed, not reused


class HttpClientError(Exception):
    """The connection failed: refused, reset, closed early, or an unparsable response."""


@dataclass(frozen=True)
class Endpoint:
    """Where one URL's requests go, and the request head that every POST to it shares."""

    scheme: str
    host: str
    port: int
    head: bytes  # request line and fixed headers, without Content-Length

    @classmethod
    def parse(cls, url: str, headers: dict[str, str]) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host_header = parts.netloc.rsplit("@", 1)[-1]
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {target} HTTP/1.1", f"Host: {host_header}",
                 "Accept-Encoding: identity", "User-Agent: hallgate",
                 *(f"{k}: {v}" for k, v in headers.items())]
        return cls(parts.scheme, parts.hostname, port, ("\r\n".join(lines) + "\r\n").encode())

    def request(self, body: bytes) -> bytes:
        return b"%sContent-Length: %d\r\n\r\n%s" % (self.head, len(body), body)


class Response:
    """Status, headers (lower-case names) and, for ``HttpClient.post``, the whole body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes = b""):
        self.status = status
        self.headers = headers
        self.body = body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time. The parser's callbacks fill the
    current response; ``head`` resolves at the end of the headers, ``done`` at the end of
    the message (or of the connection)."""

    def __init__(self, client: HttpClient, key: tuple):
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.idle_since = 0.0
        self.unsolicited = False  # bytes came that no request of ours asked for
        self._reset()

    def _reset(self) -> None:
        self.header_pairs: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.received = False  # any byte of this exchange's answer
        self.interim = False  # the parser is inside a 1xx answer, the final one follows
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self.head: asyncio.Future | None = None
        self.waiter: asyncio.Future | None = None  # a reader waiting for body bytes

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.head is None or self.complete:  # idle: no request is waiting for these
            self._unsolicited()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HttpClientError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(HttpClientError(f"malformed HTTP response: {exc}"))
        if self.unsolicited:  # a second answer followed this exchange's in the same read
            self._unsolicited()

    def _unsolicited(self) -> None:
        """Bytes beyond the one answer the current request asked for: the connection is
        out of step with its requests, so it is closed and never reused (the answer
        already complete, if any, stays readable)."""
        self.unsolicited = True
        self.client._count_unsolicited()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.client._forget(self)
        if self.head is not None and not self.complete:
            if self.head.done() and self._reads_to_eof():  # body delimited by closing
                self.on_message_complete()
            else:
                self._fail(HttpClientError("the upstream closed the connection"
                                           + (f": {exc!r}" if exc else "")))

    def pause_writing(self) -> None:  # requests are small; nothing to throttle
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks; once an exchange's final answer is complete, whatever the
    # parser reads next belongs to no request and is ignored (``unsolicited``)
    def on_message_begin(self) -> None:
        if self.complete:
            self.unsolicited = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.unsolicited:
            self.header_pairs.append((name, value))

    def on_headers_complete(self) -> None:
        if self.unsolicited:
            return
        status = self.parser.get_status_code()
        if status < 200:  # 1xx (101 raises HttpParserUpgrade): an interim answer, skipped
            self.interim = True
            self.header_pairs = []
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in self.header_pairs}
        if self.head is not None and not self.head.done():
            self.head.set_result(Response(status, headers))

    def on_body(self, body: bytes) -> None:
        if self.unsolicited:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > MAX_BUFFERED and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.unsolicited:
            return
        if self.interim:  # the end of a 1xx answer: the final answer is still to come
            self.interim = False
            return
        self.complete = True
        # read here: after the callback the parser has reset and no longer knows
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # the exchange
    def _reads_to_eof(self) -> bool:
        headers = {k.lower() for k, _ in self.header_pairs}
        return b"content-length" not in headers and b"transfer-encoding" not in headers

    def _fail(self, exc: Exception) -> None:
        self.error = exc
        if self.head is not None and not self.head.done():
            self.head.set_exception(exc)
        self._wake()
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def send(self, data: bytes) -> asyncio.Future:
        self._reset()
        self.head = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.head

    def buffered_chunk(self) -> bytes | None:
        """The next body bytes if they have arrived already, else None (no waiting)."""
        if not self.chunks or self.error is not None:
            return None
        return self._take()

    async def read_chunk(self, timeout: float | None = None) -> bytes | None:
        """The next body bytes; None at the end of the message. A wait for bytes longer
        than ``timeout`` seconds raises TimeoutError (one timer handle, cheaper than an
        ``asyncio.timeout`` block per read)."""
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.complete:
                return None
            loop = asyncio.get_running_loop()
            self.waiter = waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                self.waiter = None
                if timer is not None:
                    timer.cancel()
        return self._take()

    def _take(self) -> bytes:
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.buffered <= MAX_BUFFERED // 4 and self.transport is not None:
            self.transport.resume_reading()
        return chunk

    def reusable(self) -> bool:
        """Between messages with nothing unread: the final answer complete and read, keep-
        alive allowed, and no byte seen that no request asked for."""
        return (self.complete and self.keep_alive and not self.chunks and self.error is None
                and not self.lost and not self.unsolicited)


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class HttpClient:
    """A pool of keep-alive connections per (scheme, host, port), shared by all upstreams
    of a process; ``aclose`` (or ``async with``) closes them. ``tls``: the context https
    connections verify against (default: the system's CA store; SSL_CERT_FILE is honoured).
    ``on_unsolicited`` is called each time a connection is closed because bytes came that no
    request asked for (the app counts them in a metric)."""

    def __init__(self, connect_timeout_s: float = 10.0, tls: ssl.SSLContext | None = None,
                 on_unsolicited: Callable[[], None] | None = None):
        self.connect_timeout_s = connect_timeout_s
        self._idle: dict[tuple, list[_Connection]] = {}
        self._ssl = tls
        self._on_unsolicited = on_unsolicited

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.transport.close()
        self._idle.clear()

    async def post(self, endpoint: Endpoint, body: bytes, timeout: float) -> Response:
        """POST and read the whole answer, all within ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            conn, resp = await self._exchange(endpoint, body)
            try:
                parts = []
                while (chunk := await conn.read_chunk()) is not None:
                    parts.append(chunk)
            finally:
                self._release(conn)  # hangs up unless the answer came whole
        resp.body = _decoded(b"".join(parts), resp.headers.get("content-encoding"))
        return resp

    async def open(self, endpoint: Endpoint, body: bytes, timeout: float) -> Stream:
        """POST and return once the status and headers are in (within ``timeout``)."""
        async with asyncio.timeout(timeout):
            conn, resp = await self._exchange(endpoint, body)
        return Stream(self, conn, resp)

    async def _exchange(self, endpoint: Endpoint, body: bytes) -> tuple[_Connection, Response]:
        request = endpoint.request(body)
        conn = self._pooled(endpoint)
        if conn is not None:
            try:
                return conn, await conn.send(request)
            except BaseException as exc:
                conn.transport.close()
                if not isinstance(exc, HttpClientError) or conn.received:
                    raise  # a timeout, or the server did answer: not a stale socket
        conn = await self._connect(endpoint)
        try:
            return conn, await conn.send(request)
        except BaseException:
            conn.transport.close()
            raise

    def _pooled(self, endpoint: Endpoint) -> _Connection | None:
        idle = self._idle.get((endpoint.scheme, endpoint.host, endpoint.port))
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()
            if not conn.lost and now - conn.idle_since < IDLE_KEEPALIVE_S:
                return conn
            conn.transport.close()
        return None

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        key = (endpoint.scheme, endpoint.host, endpoint.port)
        loop = asyncio.get_running_loop()
        tls = endpoint.scheme == "https"
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, key), endpoint.host, endpoint.port,
                    ssl=self._tls_context() if tls else None,
                    server_hostname=endpoint.host if tls else None)
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is one)
            raise HttpClientError(f"cannot connect to {endpoint.host}:{endpoint.port}: "
                                  f"{exc}") from exc
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:  # made on first use: most gateways never speak https
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _release(self, conn: _Connection) -> None:
        if not conn.reusable():
            conn.transport.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(conn.key, []).append(conn)

    def _count_unsolicited(self) -> None:
        if self._on_unsolicited is not None:
            self._on_unsolicited()

    def _forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)


class Stream:
    """A response whose body is read as it arrives; ``close`` gives the connection back
    when the body was read to its end and hangs up otherwise."""

    def __init__(self, client: HttpClient, conn: _Connection, response: Response):
        self.client = client
        self.conn: _Connection | None = conn
        self.status = response.status
        self.headers = response.headers
        encoding = response.headers.get("content-encoding")
        self._inflate = (zlib.decompressobj(wbits=_WBITS[encoding]) if encoding in _WBITS
                         else None)

    async def read(self, read_timeout: float) -> bytes:
        """The whole (rest of the) body; each read within ``read_timeout``."""
        return b"".join([chunk async for chunk in self.chunks(read_timeout)])

    async def _next(self, read_timeout: float) -> bytes | None:
        """The next decoded body bytes, None at the end; a wait longer than
        ``read_timeout`` raises TimeoutError. Bytes already received are returned without
        arming a timer (most chunks of a fast stream arrive several to a read)."""
        conn = self.conn
        if conn is None:
            return None
        chunk = conn.buffered_chunk()
        if chunk is None:
            chunk = await conn.read_chunk(read_timeout)
        if self._inflate is None:
            return chunk
        if chunk is None:
            rest, self._inflate = self._inflate.flush(), None
            return rest or None
        return self._inflate.decompress(chunk)

    async def chunks(self, read_timeout: float) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (see :meth:`_next` for the timeout)."""
        while (chunk := await self._next(read_timeout)) is not None:
            yield chunk

    async def lines(self, read_timeout: float) -> AsyncIterator[bytes]:
        """The body split at newlines (the newline kept off; a last unterminated line too)."""
        pending = b""
        while (chunk := await self._next(read_timeout)) is not None:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line
        if pending:
            yield pending

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.client._release(conn)


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decoded(body: bytes, encoding: str | None) -> bytes:
    """The body without its content coding (servers should not compress: we ask for
    identity; a gzip or deflate body is still decoded)."""
    if encoding in _WBITS:
        return zlib.decompress(body, _WBITS[encoding])
    return body
