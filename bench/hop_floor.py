"""The floor under the gateway's hop: what forwarding one request costs before any of
hallgate's own work, and what the upstream client's share of it is.

Each target is its own process in front of one fake upstream (``tests.fake_upstream``,
20 ms); one client takes them in turn at concurrency 1 (bench/overhead.py's interleaved
``http.client`` loop), so drift in the machine's load hits all alike:

    direct-plain          client -> fake upstream
    tcp-relay             client -> asyncio byte relay (no HTTP parsing)            -> fake
    asgi-aiohttp          client -> uvicorn + a bare ASGI app, forwarding with aiohttp -> fake
    asgi-http1            the same app forwarding with proxy/upstream/http1.py      -> fake
    hallgate-passthrough  client -> hallgate serve, every detector off             -> fake

Both ASGI apps run under uvicorn's own uvloop and httptools protocol (``hallgate serve``
puts it on the coalescing transport of proxy/server.py, which sends each answer in one
write) and do only: read the body, POST it upstream, send the answer back. So
``asgi-http1 - tcp-relay`` is the price of an HTTP server and client in Python, and
``hallgate-passthrough - asgi-http1`` is the gateway's own work (parsing, policy,
metrics, shaping), less what its one write per answer saves.

    .venv/bin/python bench/hop_floor.py --rounds 1000

aiohttp is not a hallgate dependency; it comes with litellm.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

import typer
from overhead import (  # bench/overhead.py (this folder is on sys.path as the script's)
    Target,
    gateway_command,
    gateway_config,
    interleaved,
    server,
    start_fake_upstream,
)

from proxy.embedded import free_port

SCRIPT = str(Path(__file__).resolve())


# --------------------------------------------------------------------------- the floors


async def relay(port: int, upstream_port: int) -> None:
    """Pipe bytes between each client connection and its own upstream connection."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    server_ = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server_:
        await server_.serve_forever()


def forwarding_app(upstream: str, client_name: str):
    """A bare ASGI app: GET answers 200 (readiness); POST goes upstream as it is."""
    url = upstream.rstrip("/") + "/chat/completions"
    json_headers = {"Content-Type": "application/json"}
    state: dict = {}

    async def forward_aiohttp(body: bytes) -> tuple[int, bytes]:
        import aiohttp

        if "session" not in state:
            state["session"] = aiohttp.ClientSession()
        async with state["session"].post(url, data=body, headers=json_headers) as resp:
            return resp.status, await resp.read()

    async def forward_http1(body: bytes) -> tuple[int, bytes]:
        from proxy.upstream.http1 import Endpoint, HttpClient

        if "client" not in state:
            state["client"] = HttpClient()
            state["endpoint"] = Endpoint.parse(url, json_headers)
        resp = await state["client"].post(state["endpoint"], body, timeout=30)
        return resp.status, resp.body

    forward = {"aiohttp": forward_aiohttp, "http1": forward_http1}[client_name]

    async def asgi(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status, answer = (200, b"{}") if scope["method"] == "GET" else await forward(
            b"".join(chunks))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    return asgi


def relay_command(port: int = typer.Option(...), upstream_port: int = typer.Option(...)):
    import uvloop

    uvloop.run(relay(port, upstream_port))


def asgi_command(port: int = typer.Option(...), upstream: str = typer.Option(...),
                 client: str = typer.Option(...)):
    import uvicorn

    uvicorn.run(forwarding_app(upstream, client), host="127.0.0.1", port=port,
                log_level="warning", access_log=False, loop="uvloop", http="httptools",
                lifespan="off")


# --------------------------------------------------------------------------- the bench


def main(rounds: int = typer.Option(1000, help="Interleaved concurrency-1 rounds."),
         latency_ms: float = typer.Option(20.0, help="The fake upstream's latency.")) -> None:
    """Added p50 at concurrency 1 of a byte relay, two bare forwarding apps and hallgate."""
    with tempfile.TemporaryDirectory(prefix="hallgate-hop-") as tmp, \
            contextlib.ExitStack() as stack:
        log_dir = Path(tmp)
        fake_url, _ = start_fake_upstream(stack, log_dir, latency_ms)
        fake_port = int(fake_url.rsplit(":", 1)[1])
        targets = [Target("direct-plain", fake_url)]

        def start(name: str, argv: list[str], port: int, ready_path: str = "/") -> None:
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(server(name, argv, url + ready_path, log_dir))
            targets.append(Target(name, url))

        port = free_port()
        start("tcp-relay", [sys.executable, SCRIPT, "relay", "--port", str(port),
                            "--upstream-port", str(fake_port)], port, "/v1/models")
        for client in ("aiohttp", "http1"):
            port = free_port()
            start(f"asgi-{client}", [sys.executable, SCRIPT, "asgi", "--port", str(port),
                                     "--upstream", f"{fake_url}/v1", "--client", client], port)
        port = free_port()
        lean = {"provider": "openai", "model": "fake-model", "api_base": f"{fake_url}/v1"}
        config = gateway_config(log_dir, "hallgate-passthrough", port, lean, "passthrough")
        start("hallgate-passthrough", [*gateway_command(), "--config", str(config),
                                       "--port", str(port)], port, "/readyz")
        latencies = interleaved(targets, rounds)

    base = latencies["direct-plain"].p50_ms
    added = {name: lat.p50_ms - base for name, lat in latencies.items()}
    for name, lat in latencies.items():
        print(f"{name:22s} p50 {lat.p50_ms:7.2f} ms  added {added[name]:+6.2f} ms  "
              f"p99 {lat.p99_ms:7.2f} ms  errors {lat.errors}")
    errors = sum(lat.errors for lat in latencies.values())
    print(f"RESULT direct_p50_ms={base:.2f} relay_added_p50_ms={added['tcp-relay']:.2f} "
          f"asgi_aiohttp_added_p50_ms={added['asgi-aiohttp']:.2f} "
          f"asgi_http1_added_p50_ms={added['asgi-http1']:.2f} "
          f"hallgate_added_p50_ms={added['hallgate-passthrough']:.2f} "
          f"aiohttp_minus_http1_ms={added['asgi-aiohttp'] - added['asgi-http1']:.2f} "
          f"hallgate_minus_floor_ms={added['hallgate-passthrough'] - added['asgi-http1']:.2f} "
          f"rounds={rounds} errors={errors}")


SERVERS = {"relay": relay_command, "asgi": asgi_command}  # the targets' own processes

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in SERVERS:
        typer.run(SERVERS[sys.argv.pop(1)])
    else:
        typer.run(main)
