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

Each endpoint may name a forward proxy (:func:`proxy_for`: the model's ``proxy`` setting,
else HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY as urllib reads them) and its own TLS
context (:func:`tls_context`). Through a proxy, http requests go to the proxy in absolute
form and https ones through a CONNECT tunnel; credentials in the proxy URL become a
``Proxy-Authorization: Basic`` header. The pool holds at most ``max_connections_per_host``
connections per endpoint (more requests wait for one) and keeps at most
``max_idle_per_host`` of them idle.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import socket
import ssl
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import httptools

MAX_BUFFERED = 1 << 20  # bytes a stream holds before it stops reading from the socket
IDLE_KEEPALIVE_S = 30.0  # an idle pooled connection older than this is closed, not reused
MAX_PROXY_HEAD = 16_384  # bytes of a proxy's answer to CONNECT we read before giving up


class HttpClientError(Exception):
    """The connection failed: refused, reset, closed early, or an unparsable response."""


@dataclass(frozen=True)
class Proxy:
    """A forward HTTP proxy: where to connect, and the Proxy-Authorization value if the
    URL carried credentials."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> Proxy:
        if "://" not in url:  # "proxy.corp:3128", as curl and requests accept it
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"unsupported proxy {_without_credentials(url)!r}: only "
                             "http://[user:password@]host:port proxies are supported")
        auth = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(pair.encode()).decode()
        return cls(parts.hostname, parts.port or 80, auth)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _without_credentials(url: str) -> str:
    parts = urlsplit(url if "://" in url else "http://" + url)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


def proxy_for(url: str, setting: str | None = None) -> Proxy | None:
    """The proxy requests to ``url`` go through. ``setting``: a model's ``proxy`` (an
    http:// URL, or ``"none"`` for a direct connection); unset, the environment decides
    as for urllib, requests and httpx: ``<scheme>_proxy`` then ``all_proxy`` (lower case
    wins over upper case), unless ``no_proxy`` names the host (``*``, a domain suffix,
    ``host:port``)."""
    if setting == "none":
        return None
    if setting:
        return Proxy.parse(setting)
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    chosen = proxies.get(parts.scheme) or proxies.get("all")
    if not chosen:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if "no" in proxies and urllib.request.proxy_bypass_environment(
            f"{parts.hostname}:{port}", proxies):
        return None
    return Proxy.parse(chosen)


def tls_context(ca_file: str | None = None, client_cert: str | None = None,
                client_key: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """A client TLS context: the system store (or ``ca_file``), an optional client
    certificate, and no verification at all when ``verify`` is false."""
    context = ssl.create_default_context(cafile=ca_file)
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class Endpoint:
    """Where one URL's requests go, and the request head that every POST to it shares.
    ``tls``: the context https connections use (None: the client's default); ``key``:
    the pool this endpoint's connections live in."""

    scheme: str
    host: str
    port: int
    head: bytes  # request line and fixed headers, without Content-Length
    proxy: Proxy | None = None
    tls: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    key: tuple = field(default=(), compare=False, repr=False)

    @classmethod
    def parse(cls, url: str, headers: dict[str, str], *, proxy: Proxy | None = None,
              tls: ssl.SSLContext | None = None) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host_header = parts.netloc.rsplit("@", 1)[-1]
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        extra = []
        if proxy is not None and parts.scheme == "http":  # absolute form, to the proxy
            target = f"http://{host_header}{target}"
            if proxy.authorization:
                extra.append(f"Proxy-Authorization: {proxy.authorization}")
        lines = [f"POST {target} HTTP/1.1", f"Host: {host_header}",
                 "Accept-Encoding: identity", "User-Agent: hallgate",
                 *(f"{k}: {v}" for k, v in headers.items()), *extra]
        key = (parts.scheme, parts.hostname, port, proxy, id(tls) if tls else None)
        return cls(parts.scheme, parts.hostname, port,
                   ("\r\n".join(lines) + "\r\n").encode(), proxy, tls, key)

    def request(self, body: bytes) -> bytes:
        return b"%sContent-Length: %d\r\n\r\n%s" % (self.head, len(body), body)

    def describe(self) -> str:
        """host:port, and the proxy if there is one (for messages and logs)."""
        where = f"{self.host}:{self.port}"
        return where if self.proxy is None else f"{where} via proxy {self.proxy}"


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
    """A pool of keep-alive connections per endpoint (scheme, host, port, proxy, TLS
    context), shared by all upstreams of a process; ``aclose`` (or ``async with``) closes
    them. ``tls``: the context https connections verify against unless their endpoint
    has its own (default: the system's CA store; SSL_CERT_FILE is honoured).
    ``on_unsolicited`` is called each time a connection is closed because bytes came that no
    request asked for (the app counts them in a metric)."""

    def __init__(self, connect_timeout_s: float = 10.0, tls: ssl.SSLContext | None = None,
                 max_connections_per_host: int = 256, max_idle_per_host: int = 64,
                 on_unsolicited: Callable[[], None] | None = None):
        self.connect_timeout_s = connect_timeout_s
        self.max_connections_per_host = max_connections_per_host
        self.max_idle_per_host = max_idle_per_host
        self._idle: dict[tuple, list[_Connection]] = {}
        self._slots: dict[tuple, asyncio.Semaphore] = {}
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

    def _slot(self, endpoint: Endpoint) -> asyncio.Semaphore:
        """The per-host limit: one unit per connection in use (an exchange or a stream)."""
        slot = self._slots.get(endpoint.key)
        if slot is None:
            slot = self._slots[endpoint.key] = asyncio.Semaphore(self.max_connections_per_host)
        return slot

    async def post(self, endpoint: Endpoint, body: bytes, timeout: float) -> Response:
        """POST and read the whole answer, all within ``timeout`` seconds (a wait for a
        free connection included)."""
        slot = self._slot(endpoint)
        async with asyncio.timeout(timeout):
            await slot.acquire()
            try:
                conn, resp = await self._exchange(endpoint, body)
                try:
                    parts = []
                    while (chunk := await conn.read_chunk()) is not None:
                        parts.append(chunk)
                finally:
                    self._release(conn)  # hangs up unless the answer came whole
                    self._trim(endpoint.key)
            finally:
                slot.release()
        resp.body = _decoded(b"".join(parts), resp.headers.get("content-encoding"))
        return resp

    async def open(self, endpoint: Endpoint, body: bytes, timeout: float) -> Stream:
        """POST and return once the status and headers are in (within ``timeout``)."""
        slot = self._slot(endpoint)
        acquired = False
        try:
            async with asyncio.timeout(timeout):
                await slot.acquire()
                acquired = True
                conn, resp = await self._exchange(endpoint, body)
        except BaseException:
            if acquired:
                slot.release()
            raise
        return Stream(self, conn, resp, slot)

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
        idle = self._idle.get(endpoint.key)
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()
            if not conn.lost and now - conn.idle_since < IDLE_KEEPALIVE_S:
                return conn
            conn.transport.close()
        return None

    def _trim(self, key: tuple) -> None:
        """Close the oldest idle connections beyond ``max_idle_per_host``."""
        idle = self._idle.get(key)
        while idle and len(idle) > self.max_idle_per_host:
            idle.pop(0).transport.close()

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls_context(endpoint) if endpoint.scheme == "https" else None
        hostname = endpoint.host if tls else None
        proxy = endpoint.proxy
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if proxy is None:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self, endpoint.key), endpoint.host,
                        endpoint.port, ssl=tls, server_hostname=hostname)
                elif tls is None:  # plain http: every request goes to the proxy
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self, endpoint.key), proxy.host, proxy.port)
                else:
                    sock = await _tunnel(proxy, endpoint.host, endpoint.port)
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self, endpoint.key), sock=sock, ssl=tls,
                        server_hostname=hostname)
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is one)
            raise HttpClientError(f"cannot connect to {endpoint.describe()}: {exc}") from exc
        return conn

    def _tls_context(self, endpoint: Endpoint) -> ssl.SSLContext:
        if endpoint.tls is not None:
            return endpoint.tls
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


async def _tunnel(proxy: Proxy, host: str, port: int) -> socket.socket:
    """A socket connected through ``proxy`` to ``host:port`` by HTTP CONNECT, ready for
    the TLS handshake. A refusal (403, 407 ...) raises HttpClientError naming it."""
    loop = asyncio.get_running_loop()
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
    if proxy.authorization:
        request += f"Proxy-Authorization: {proxy.authorization}\r\n"
    sock = await _open_socket(proxy.host, proxy.port)
    try:
        await loop.sock_sendall(sock, (request + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = await loop.sock_recv(sock, 4096)
            if not data or len(head) > MAX_PROXY_HEAD:
                raise HttpClientError(f"the proxy {proxy} closed the connection or sent no "
                                      f"HTTP answer to CONNECT {authority}")
            head += data
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        status = status_line.split(" ", 2)[1:2]
        if not status or not status[0].startswith("2"):
            raise HttpClientError(f"the proxy {proxy} refused CONNECT {authority}: "
                                  f"{status_line!r}")
    except BaseException:
        sock.close()
        raise
    return sock


async def _open_socket(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket connected to the first address of ``host`` that answers."""
    loop = asyncio.get_running_loop()
    error: OSError = OSError(f"no address for {host}")
    for family, type_, proto, _, address in await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error


class Stream:
    """A response whose body is read as it arrives; ``close`` gives the connection back
    when the body was read to its end and hangs up otherwise."""

    def __init__(self, client: HttpClient, conn: _Connection, response: Response,
                 slot: asyncio.Semaphore | None = None):
        self.client = client
        self.conn: _Connection | None = conn
        self._slot = slot  # the per-host limit's unit this stream holds until closed
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
            self.client._trim(conn.key)
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.release()


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decoded(body: bytes, encoding: str | None) -> bytes:
    """The body without its content coding (servers should not compress: we ask for
    identity; a gzip or deflate body is still decoded)."""
    if encoding in _WBITS:
        return zlib.decompress(body, _WBITS[encoding])
    return body
