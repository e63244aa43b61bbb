"""Two builds of the upstream client (proxy/upstream/http1.py) side by side: the CPU each
spends per request, in one process, in one run.

A change to the client costs microseconds; on a shared machine a gateway-level A/B
(bench/ab_c1.py) cannot resolve that, since its latency noise is milliseconds. This loads
both builds' http1.py as modules, points them at one canned HTTP/1.1 server in another
process (a fixed keep-alive answer: no upstream work to wait for), and takes them in turn,
request by request, measuring this thread's CPU time (``time.thread_time``) and the wall
time of each POST (whole JSON answer) and each stream (open, read every SSE line, close).
CPU time is what other processes on the machine disturb least. aiohttp (with
``trust_env=True``, the maintained client that honours proxy variables) takes its turn in
the same loop, for the keep-or-switch question (aiohttp comes with litellm).

    git worktree add /tmp/hallgate-base <commit>
    .venv/bin/python bench/http1_ab.py --base /tmp/hallgate-base [--rounds 5000]
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import typer

from proxy.embedded import free_port

REPO = Path(__file__).resolve().parents[1]
JSON = b'{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}'
SSE = b"".join(b"data: {\"choices\":[{\"delta\":{\"content\":\"w%d\"}}]}\n\n" % i
               for i in range(20)) + b"data: [DONE]\n\n"


def canned_answer(stream: bool) -> bytes:
    if not stream:
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d"
                b"\r\n\r\n%s" % (len(JSON), JSON))
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: "
            b"chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(SSE), SSE))


async def serve(port: int) -> None:
    """Answers every request: JSON, or SSE when the body says "stream"."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                writer.write(canned_answer(b"stream" in body))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def wait_for(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the canned server did not listen on {port}")


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path / "proxy/upstream/http1.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def http1_calls(module, url: str):
    """(json call, stream call) of one http1.py build."""
    client = module.HttpClient()
    endpoint = module.Endpoint.parse(url, {"Content-Type": "application/json"})

    async def post() -> None:
        assert (await client.post(endpoint, b'{"a":1}', 5)).status == 200

    async def stream() -> None:
        resp = await client.open(endpoint, b'{"stream":1}', 5)
        lines = [line async for line in resp.lines(5)]
        resp.close()
        assert len(lines) == 42

    return post, stream, client.aclose


def aiohttp_calls(url: str):
    """The same two calls on aiohttp with ``trust_env=True`` (proxies from the
    environment, as a maintained client would be run here)."""
    import aiohttp

    session = aiohttp.ClientSession(trust_env=True)
    headers = {"Content-Type": "application/json"}

    async def post() -> None:
        async with session.post(url, data=b'{"a":1}', headers=headers) as resp:
            await resp.read()
            assert resp.status == 200

    async def stream() -> None:
        async with session.post(url, data=b'{"stream":1}', headers=headers) as resp:
            lines = [line async for line in resp.content]
            assert len(lines) == 42

    return post, stream, session.close


async def measure(builds: dict, port: int, rounds: int,
                  with_aiohttp: bool) -> dict[str, dict[str, list]]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    calls = {name: http1_calls(m, url) for name, m in builds.items()}
    if with_aiohttp:
        calls["aiohttp"] = aiohttp_calls(url)
    samples = {f"{kind}_{name}": {"cpu": [], "wall": []}
               for kind in ("json", "stream") for name in calls}
    names = list(calls)
    shuffle = random.Random(0).shuffle
    for i in range(rounds + 200):  # the first 200 warm up
        # a fresh order each round (seeded): a client finds the caches as the one before
        # it left them, and each should follow each as often
        shuffle(names)
        for name in names:
            post, stream, _ = calls[name]
            for kind, call in (("json", post), ("stream", stream)):
                cpu, wall = time.thread_time(), time.perf_counter()
                await call()
                if i >= 200:
                    samples[f"{kind}_{name}"]["cpu"].append(time.thread_time() - cpu)
                    samples[f"{kind}_{name}"]["wall"].append(time.perf_counter() - wall)
    for _, _, close in calls.values():
        await close()
    return samples


def main(base: Path = typer.Option(..., exists=True, file_okay=False,
                                   help="A checkout of the build to compare against."),
         rounds: int = typer.Option(5000, help="Interleaved rounds per kind."),
         with_aiohttp: bool = typer.Option(True, help="Also aiohttp (trust_env=True).")
         ) -> None:
    """Per-request CPU (mean) and wall time (p50) of two http1.py builds, same run."""
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        wait_for(port)
        builds = {"base": load(base.resolve(), "http1_base"), "new": load(REPO, "http1_new")}
        samples = asyncio.run(measure(builds, port, rounds, with_aiohttp))
    finally:
        server.terminate()
    fields = {}
    for key, s in samples.items():
        fields[f"{key}_cpu_us"] = statistics.fmean(s["cpu"]) * 1e6
        fields[f"{key}_wall_p50_us"] = statistics.median(s["wall"]) * 1e6
    for kind in ("json", "stream"):
        fields[f"{kind}_cpu_new_minus_base_us"] = (fields[f"{kind}_new_cpu_us"]
                                                   - fields[f"{kind}_base_cpu_us"])
        names = [key.split("_", 1)[1] for key in samples if key.startswith(kind)]
        print(f"{kind:6s} " + " | ".join(
            f"{name}: cpu {fields[f'{kind}_{name}_cpu_us']:.1f} us, wall p50 "
            f"{fields[f'{kind}_{name}_wall_p50_us']:.1f} us" for name in names))
    print("RESULT " + " ".join(f"{k}={v:.1f}" for k, v in fields.items()) + f" rounds={rounds}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        typer.run(main)
