"""The upstream HTTP/1.1 client (proxy/upstream/http1.py) against scripted raw servers.

Each server is a real asyncio TCP server on 127.0.0.1 that writes exactly the bytes a
test gives it, so framing (Content-Length, chunked, read-to-close), keep-alive, stale
connections, compression, TLS and broken answers are all exercised over real sockets.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable

import pytest

from proxy.upstream.http1 import Endpoint, HttpClient, HttpClientError, Proxy, proxy_for

Handler = Callable[["ScriptedServer", asyncio.StreamReader, asyncio.StreamWriter, int],
                   Awaitable[None]]


class ScriptedServer:
    """Calls ``handler(server, reader, writer, connection_number)`` for each connection."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None):
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = asyncio.Event()

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/v1/chat/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(self, reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One whole request (head and Content-Length body); None at end of connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def reply(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*parts: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" \
           b"Transfer-Encoding: chunked\r\n\r\n"
    return head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def endpoint(server: ScriptedServer, scheme: str = "http") -> Endpoint:
    return Endpoint.parse(server.url(scheme), {"Content-Type": "application/json",
                                               "Authorization": "Bearer k"})


def keep_answering(answer: bytes) -> Handler:
    """Answers every request on a connection with the same bytes."""
    async def handler(server, reader, writer, number):
        while await server.read_request(reader) is not None:
            writer.write(answer)
            await writer.drain()
    return handler


async def test_request_bytes_and_keep_alive_reuse():
    async with ScriptedServer(keep_answering(reply(b'{"ok": 1}', "X-Upstream: Yes"))) as server:
        async with HttpClient() as client:
            first = await client.post(endpoint(server), b'{"a": 1}', timeout=5)
            second = await client.post(endpoint(server), b'{"b": 22}', timeout=5)
    assert (first.status, first.body, first.headers["x-upstream"]) == (200, b'{"ok": 1}', "Yes")
    assert second.body == b'{"ok": 1}'
    assert server.connections == 1  # the second request reused the first connection
    head, body = server.requests[1].split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}".encode() in head
    assert b"Authorization: Bearer k" in head and b"Content-Length: 9" in head
    assert body == b'{"b": 22}'


async def test_stream_lines_across_chunk_boundaries_then_reuse():
    answer = chunked(b"data: {\"a\"", b": 1}\n\ndata: [DO", b"NE]\n\n")
    async with ScriptedServer(keep_answering(answer)) as server:
        async with HttpClient() as client:
            stream = await client.open(endpoint(server), b"{}", timeout=5)
            assert stream.status == 200
            lines = [line async for line in stream.lines(read_timeout=5)]
            stream.close()
            again = await client.post(endpoint(server), b"{}", timeout=5)
    assert lines == [b'data: {"a": 1}', b"", b"data: [DONE]", b""]
    assert again.status == 200 and server.connections == 1


async def test_body_read_to_close_is_whole_and_not_reused():
    async def handler(server, reader, writer, number):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 70_000)
        await writer.drain()

    async with ScriptedServer(handler) as server:
        async with HttpClient() as client:
            first = await client.post(endpoint(server), b"{}", timeout=5)
            second = await client.post(endpoint(server), b"{}", timeout=5)
    assert first.body == second.body == b"x" * 70_000
    assert server.connections == 2


async def test_gzip_bodies_are_decoded_whole_and_streamed():
    packed = gzip.compress(b"data: one\ndata: two\n")
    whole = reply(packed, "Content-Encoding: gzip")
    streamed = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked"
                b"\r\n\r\n" + b"".join(b"%x\r\n%s\r\n" % (len(p), p)
                                       for p in (packed[:7], packed[7:])) + b"0\r\n\r\n")
    answers = iter([whole, streamed])

    async def handler(server, reader, writer, number):
        while await server.read_request(reader) is not None:
            writer.write(next(answers))

    async with ScriptedServer(handler) as server:
        async with HttpClient() as client:
            resp = await client.post(endpoint(server), b"{}", timeout=5)
            stream = await client.open(endpoint(server), b"{}", timeout=5)
            lines = [line async for line in stream.lines(read_timeout=5)]
            stream.close()
    assert resp.body == b"data: one\ndata: two\n"
    assert lines == [b"data: one", b"data: two"]


async def test_a_stale_pooled_connection_is_replaced_and_the_request_sent_again():
    async def handler(server, reader, writer, number):
        await server.read_request(reader)
        writer.write(reply(b"first" if number == 1 else b"fresh"))
        await writer.drain()
        if number == 1:  # the next request on this connection finds it closing
            await server.read_request(reader)
            writer.transport.abort()
            return
        while await server.read_request(reader) is not None:
            writer.write(reply(b"fresh"))

    async with ScriptedServer(handler) as server:
        async with HttpClient() as client:
            assert (await client.post(endpoint(server), b"{}", timeout=5)).body == b"first"
            assert (await client.post(endpoint(server), b"{}", timeout=5)).body == b"fresh"
    assert server.connections == 2 and len(server.requests) == 3


async def test_a_connection_closed_mid_body_is_an_error_not_a_short_body():
    async def handler(server, reader, writer, number):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()

    async with ScriptedServer(handler) as server:
        async with HttpClient() as client:
            with pytest.raises(HttpClientError, match="closed the connection"):
                await client.post(endpoint(server), b"{}", timeout=5)


async def test_a_garbled_answer_is_an_error():
    async def handler(server, reader, writer, number):
        await server.read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with ScriptedServer(handler) as server:
        async with HttpClient() as client:
            with pytest.raises(HttpClientError, match="malformed HTTP response"):
                await client.post(endpoint(server), b"{}", timeout=5)


async def test_a_silent_server_times_out_and_its_connection_is_dropped():
    async def handler(server, reader, writer, number):
        await server.read_request(reader)
        await asyncio.sleep(5)

    async with ScriptedServer(handler) as server:
        async with HttpClient() as client:
            with pytest.raises(TimeoutError):
                await client.post(endpoint(server), b"{}", timeout=0.2)
            assert client._idle.get(endpoint(server).key) in (None, [])


async def test_a_stream_that_stalls_times_out_per_read_not_per_stream():
    async def handler(server, reader, writer, number):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):  # 3 reads of 0.15 s each: longer than one timeout in all
            writer.write(b"%x\r\n%s\r\n" % (len(b"data: x\n"), b"data: x\n"))
            await writer.drain()
            await asyncio.sleep(0.15)
        await asyncio.sleep(5)  # then silence

    async with ScriptedServer(handler) as server:
        async with HttpClient() as client:
            stream = await client.open(endpoint(server), b"{}", timeout=5)
            lines = stream.lines(read_timeout=0.3)
            assert [await anext(lines) for _ in range(3)] == [b"data: x"] * 3
            with pytest.raises(TimeoutError):
                await anext(lines)
            stream.close()


async def test_closing_a_stream_early_hangs_up_on_the_upstream():
    hung_up = asyncio.Event()

    async def handler(server, reader, writer, number):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(200):
            line = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%s\r\n" % (len(line), line))
            await writer.drain()
            if await_eof := reader.at_eof():
                break
            await asyncio.sleep(0.01)
        if not await_eof:
            await reader.read()  # returns at the client's FIN
        hung_up.set()

    async with ScriptedServer(handler) as server:
        async with HttpClient() as client:
            stream = await client.open(endpoint(server), b"{}", timeout=5)
            lines = stream.lines(read_timeout=5)
            assert await anext(lines) == b"data: 0"
            stream.close()
            await asyncio.wait_for(hung_up.wait(), 5)
    assert server.connections == 1


def own_answers(segments: Callable[[bytes], list[bytes]], pause_s: float = 0.02) -> Handler:
    """Answers each request with its own body ("re: <body>"), cut into the writes that
    ``segments(final_response)`` gives, with a pause between two writes."""
    async def handler(server, reader, writer, number):
        while (request := await server.read_request(reader)) is not None:
            answer = reply(b"re: " + request.split(b"\r\n\r\n", 1)[1])
            for i, segment in enumerate(segments(answer)):
                if i:
                    await asyncio.sleep(pause_s)
                writer.write(segment)
                await writer.drain()
    return handler


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
INTERIM_CUTS = {
    "interim, head, body in separate writes": lambda a: [CONTINUE, a[:40], a[40:]],
    "all in one write": lambda a: [CONTINUE + a],
    "two interim answers": lambda a: [CONTINUE, EARLY_HINTS + a[:20], a[20:]],
    "an interim answer split across reads": lambda a: [CONTINUE[:7], CONTINUE[7:], a],
    "102 then 100 in one write": lambda a: [b"HTTP/1.1 102 Processing\r\n\r\n" + CONTINUE, a],
}


@pytest.mark.parametrize("cut", INTERIM_CUTS.values(), ids=INTERIM_CUTS.keys())
async def test_interim_answers_are_skipped_and_each_request_gets_its_own_answer(cut):
    async with ScriptedServer(own_answers(cut)) as server:
        async with HttpClient() as client:
            bodies = [(await client.post(endpoint(server), b"q%d" % n, timeout=5)).body
                      for n in range(5)]
    assert bodies == [b"re: q%d" % n for n in range(5)]
    assert server.connections == 1  # the connection stayed in step and was reused


async def test_a_stream_after_interim_answers_is_its_own_and_the_connection_reused():
    async def handler(server, reader, writer, number):
        while (request := await server.read_request(reader)) is not None:
            question = request.split(b"\r\n\r\n", 1)[1]
            for segment in (CONTINUE, EARLY_HINTS, chunked(b"data: " + question + b"\n")):
                writer.write(segment)
                await writer.drain()
                await asyncio.sleep(0.02)

    async with ScriptedServer(handler) as server:
        async with HttpClient() as client:
            lines = []
            for n in range(3):
                stream = await client.open(endpoint(server), b"s%d" % n, timeout=5)
                lines.append([line async for line in stream.lines(read_timeout=5)])
                stream.close()
    assert lines == [[b"data: s%d" % n] for n in range(3)]
    assert server.connections == 1


async def test_a_second_answer_in_the_same_read_closes_the_connection_unread():
    unsolicited = []

    async def handler(server, reader, writer, number):
        while (request := await server.read_request(reader)) is not None:
            writer.write(reply(b"re: " + request.split(b"\r\n\r\n", 1)[1])
                         + reply(b"stray answer"))
            await writer.drain()

    async with ScriptedServer(handler) as server:
        async with HttpClient(on_unsolicited=lambda: unsolicited.append(1)) as client:
            first = await client.post(endpoint(server), b"one", timeout=5)
            second = await client.post(endpoint(server), b"two", timeout=5)
    assert (first.body, second.body) == (b"re: one", b"re: two")
    assert server.connections == 2 and len(unsolicited) == 2


async def test_bytes_on_an_idle_pooled_connection_close_it_and_reach_no_one():
    unsolicited = []

    async def handler(server, reader, writer, number):
        while (request := await server.read_request(reader)) is not None:
            writer.write(reply(b"re: " + request.split(b"\r\n\r\n", 1)[1]))
            await writer.drain()
            await asyncio.sleep(0.05)  # the connection is idle in the pool by now
            writer.write(reply(b"stray answer"))
            await writer.drain()

    async with ScriptedServer(handler) as server:
        async with HttpClient(on_unsolicited=lambda: unsolicited.append(1)) as client:
            first = await client.post(endpoint(server), b"one", timeout=5)
            await asyncio.sleep(0.2)
            second = await client.post(endpoint(server), b"two", timeout=5)
    assert (first.body, second.body) == (b"re: one", b"re: two")
    assert server.connections == 2 and unsolicited == [1]


async def test_a_large_streamed_body_arrives_intact_under_backpressure():
    payload = bytes(range(256)) * 16_384  # 4 MiB, more than the 1 MiB the client buffers

    async def handler(server, reader, writer, number):
        await server.read_request(reader)
        writer.write(reply(payload))
        await writer.drain()

    async with ScriptedServer(handler) as server:
        async with HttpClient() as client:
            stream = await client.open(endpoint(server), b"{}", timeout=5)
            received = bytearray()
            async for chunk in stream.chunks(read_timeout=5):
                received += chunk
                await asyncio.sleep(0)  # a slow reader
            stream.close()
    assert bytes(received) == payload


async def test_connection_refused_is_a_client_error():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with HttpClient() as client:
        with pytest.raises(HttpClientError, match="cannot connect"):
            await client.post(Endpoint.parse(f"http://127.0.0.1:{port}/v1", {}), b"{}", 5)


def test_endpoint_rejects_what_is_not_an_http_url():
    with pytest.raises(ValueError, match="not an http"):
        Endpoint.parse("ftp://example.com/v1", {})
    assert Endpoint.parse("https://api.example.com/v1/x?y=1", {}).port == 443
    assert Endpoint.parse("https://api.example.com/v1/x?y=1", {}).head.startswith(
        b"POST /v1/x?y=1 HTTP/1.1\r\nHost: api.example.com\r\n")


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


async def test_https_verifies_the_server_against_the_trusted_certificates(self_signed):
    cert, key = self_signed
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    async with ScriptedServer(keep_answering(reply(b"secret")), tls=server_tls) as server:
        async with HttpClient() as untrusting:  # the system store knows no such CA
            with pytest.raises(HttpClientError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.post(endpoint(server, "https"), b"{}", timeout=5)
        trusting_tls = ssl.create_default_context(cafile=cert)
        async with HttpClient(tls=trusting_tls) as client:
            first = await client.post(endpoint(server, "https"), b"{}", timeout=5)
            second = await client.post(endpoint(server, "https"), b"{}", timeout=5)
    assert first.body == second.body == b"secret"


# --- forward proxies ----------------------------------------------------------------------

def test_proxy_url_credentials_become_a_basic_header():
    proxy = Proxy.parse("http://us%40er:p%3Ass@proxy.corp:3128")
    assert (proxy.host, proxy.port) == ("proxy.corp", 3128)
    assert proxy.authorization == "Basic dXNAZXI6cDpzcw=="  # base64("us@er:p:ss")
    assert "p:ss" not in repr(proxy) and str(proxy) == "proxy.corp:3128"
    assert Proxy.parse("proxy.corp:8080").port == 8080  # no scheme: http, as curl
    with pytest.raises(ValueError, match="only http://"):
        Proxy.parse("socks5://user:pw@proxy.corp:1080")


@pytest.mark.parametrize(("environ", "url", "expected"), [
    ({"HTTPS_PROXY": "http://p:1"}, "https://api.example.com/v1", "p:1"),
    ({"https_proxy": "http://low:2", "HTTPS_PROXY": "http://up:1"}, "https://a.b/v1", "low:2"),
    ({"HTTPS_PROXY": "http://p:1"}, "http://api.example.com/v1", None),
    ({"HTTP_PROXY": "http://p:1"}, "http://api.example.com/v1", "p:1"),
    ({"ALL_PROXY": "http://all:3"}, "https://api.example.com/v1", "all:3"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, "https://api.example.com/v1",
     None),
    ({"HTTPS_PROXY": "http://p:1", "no_proxy": "*"}, "https://x.y/v1", None),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other.com"}, "https://api.example.com/v1",
     "p:1"),
])
def test_proxy_from_the_environment(monkeypatch, environ, url, expected):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    found = proxy_for(url)
    assert (str(found) if found else None) == expected
    assert proxy_for(url, "none") is None  # the model's setting wins
    assert str(proxy_for(url, "http://mine:9")) == "mine:9"


async def test_http_through_a_proxy_uses_the_absolute_form_and_its_credentials():
    async with ScriptedServer(keep_answering(reply(b"via proxy"))) as proxy_server:
        proxy = Proxy.parse(f"http://u:pw@127.0.0.1:{proxy_server.port}")
        target = Endpoint.parse("http://upstream.invalid:8000/v1/chat/completions", {},
                                proxy=proxy)
        async with HttpClient() as client:
            resp = await client.post(target, b"{}", timeout=5)
    assert resp.body == b"via proxy"
    head = proxy_server.requests[0].split(b"\r\n\r\n")[0]
    assert head.startswith(b"POST http://upstream.invalid:8000/v1/chat/completions HTTP/1.1")
    assert b"Proxy-Authorization: Basic dTpwdw==" in head


def connect_proxy(answer: bytes, upstream_port: int | None = None) -> Handler:
    """A CONNECT proxy: reads the CONNECT, answers ``answer`` and, when it is a 200, relays
    bytes to ``upstream_port`` both ways."""
    async def handler(server, reader, writer, number):
        head = await reader.readuntil(b"\r\n\r\n")
        server.requests.append(head)
        writer.write(answer)
        await writer.drain()
        if upstream_port is None:
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)

        async def pipe(src, dst):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer),
                             return_exceptions=True)
    return handler


async def test_https_through_a_connect_tunnel(self_signed):
    cert, key = self_signed
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    async with ScriptedServer(keep_answering(reply(b"tunnelled")), tls=server_tls) as origin:
        handler = connect_proxy(b"HTTP/1.1 200 Connection established\r\n\r\n", origin.port)
        async with ScriptedServer(handler) as proxy_server:
            proxy = Proxy.parse(f"http://u:pw@127.0.0.1:{proxy_server.port}")
            target = Endpoint.parse(origin.url("https"), {}, proxy=proxy,
                                    tls=ssl.create_default_context(cafile=cert))
            async with HttpClient() as client:
                first = await client.post(target, b"{}", timeout=5)
                second = await client.post(target, b"{}", timeout=5)
    assert first.body == second.body == b"tunnelled"
    assert proxy_server.connections == 1  # the tunnel is pooled like any connection
    connect = proxy_server.requests[0]
    assert connect.startswith(f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic dTpwdw==" in connect


async def test_a_proxy_refusing_connect_is_named():
    handler = connect_proxy(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    async with ScriptedServer(handler) as proxy_server:
        target = Endpoint.parse("https://api.example.com/v1", {},
                                proxy=Proxy.parse(f"http://127.0.0.1:{proxy_server.port}"))
        async with HttpClient() as client:
            with pytest.raises(HttpClientError, match="refused CONNECT api.example.com:443: "
                                                      "'HTTP/1.1 407 Proxy Authentication"):
                await client.post(target, b"{}", timeout=5)


# --- pool limits --------------------------------------------------------------------------

def answer_ok_once_released(release: asyncio.Event):
    """A scripted-server handler that answers each request "ok" once ``release`` is set:
    the requests hold their connections until then."""
    async def handler(server, reader, writer, number):
        while await server.read_request(reader) is not None:
            await release.wait()
            writer.write(reply(b"ok"))
            await writer.drain()
    return handler


async def test_connections_per_host_are_limited_and_requests_wait_for_one():
    release = asyncio.Event()
    handler = answer_ok_once_released(release)

    async with ScriptedServer(handler) as server:
        async with HttpClient(max_connections_per_host=2) as client:
            calls = [asyncio.create_task(client.post(endpoint(server), b"{}", timeout=5))
                     for _ in range(5)]
            await asyncio.sleep(0.2)
            assert server.connections == 2 and len(server.requests) == 2
            stream_wait = asyncio.create_task(client.open(endpoint(server), b"{}", timeout=5))
            await asyncio.sleep(0.05)
            assert not stream_wait.done()  # a stream waits for a connection too
            release.set()
            assert [r.body for r in await asyncio.gather(*calls)] == [b"ok"] * 5
            stream = await stream_wait
            assert await stream.read(5) == b"ok"
            stream.close()
    assert server.connections == 2


async def test_idle_connections_beyond_the_bound_are_closed():
    release = asyncio.Event()
    handler = answer_ok_once_released(release)

    async with ScriptedServer(handler) as server:
        async with HttpClient(max_idle_per_host=1) as client:
            calls = [asyncio.create_task(client.post(endpoint(server), b"{}", timeout=5))
                     for _ in range(3)]
            await asyncio.sleep(0.2)
            release.set()
            await asyncio.gather(*calls)
            assert server.connections == 3
            assert len(client._idle[endpoint(server).key]) == 1
