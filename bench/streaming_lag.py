"""Release lag of concurrent progressive streams, and the fast path beside them.

    nice -n 5 .venv/bin/python bench/streaming_lag.py [--streams 32 --tokens 1000 --rate 50]
        [--judge none --judge mean_logprob --judge halt_causal] [--rounds 2]
        [--action annotate|abstain]

A fake upstream (tests/fake_upstream.py, its own process) streams ``tokens`` tokens at
``rate`` tokens/s per stream; each token's text is the wall-clock time it was sent. One
gateway (its own process) relays ``streams`` concurrent streams, started together, under
each profile of ``--judge`` in turn, alternating for ``--rounds``:

    none          the baseline: every detector off, each token relayed as it comes, with
                  its top-20 logprobs (asked by the client), so the fake upstream and the
                  gateway move the same bytes as on the progressive routes
    mean_logprob  progressive, W = k = 8; the running −mean-logprob judges the prefixes;
                  the bidirectional HALT and mean_logprob judge the whole answer (HALT
                  re-reads it)
    halt_causal   progressive, W = k = 8; causal HALT judges the prefixes and, from its
                  carried state, the whole answer (nothing is re-read)

``--action annotate``: nothing is cut and the held tail goes out when the upstream ends;
``--action abstain`` (every threshold 1.0, so nothing is cut or withheld): the last W
tokens wait for the whole answer's judgement, which could withhold them.

The release lag of token j is the time the client received it minus the time the
upstream sent token min(j + W, T − 1) (W = 0 for the baseline): the hold-back itself is
not lag. Reported over all tokens, over the body (released while the upstream generates)
and over the last W tokens of each answer (the tail). Beside the streams, one client asks
a route with every detector off for short JSON answers in a loop; its latency is compared
with the same loop on the idle gateway just before. Also per round: the gateway's CPU
(user + system, /proc) while the streams ran, as a share of one core, and the machine's
1-minute load average (the CPU is shared: lag follows what the other processes take).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import typer
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.overhead import cpu_seconds, gateway_command, wait_ready  # noqa: E402
from bench.streaming_cpu import gateway  # noqa: E402
from proxy.embedded import free_port, stop_process  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OFF = {"enabled": False}
W = K = 8


def serve_fake(port: int, tokens: int, rate: float) -> None:
    """The fake upstream, each streamed token's text the time it was sent."""
    import uvicorn

    from tests import fake_upstream as fu

    class Timestamped(fu.FakeUpstream):
        def _token_chunk(self, base, body, index, word, position, top_k):
            return super()._token_chunk(base, body, index, f" {time.time():.6f}", position,
                                        top_k)

    fake = Timestamped(fu.Script(text=" ".join(["x"] * tokens), token_delay_s=1.0 / rate))
    uvicorn.run(fake.app, host="127.0.0.1", port=port, log_level="error", lifespan="off",
                access_log=False)


JUDGES = {  # the prefix judge -> the profile's detectors
    "none": {},  # the baseline: every detector off, so the gateway relays at once
    "mean_logprob": {"halt": {"enabled": True}, "mean_logprob": {"enabled": True}},
    "halt_causal": {"halt": OFF, "halt_causal": {"enabled": True}},
}


def policy(action: str = "annotate") -> dict:
    """``action: abstain`` with every threshold at 1.0: nothing is cut or withheld, but
    the last W tokens wait for the whole answer's judgement, which could withhold them."""
    off = {"halt": OFF, "edfl": OFF, "semantic": OFF}
    never = 1.0 if action == "abstain" else None

    def live(judge: str) -> dict:
        if judge == "none":
            return {"detectors": off, "action": "shadow", "fail_mode": "open"}
        detectors = {name: {**knobs, **({"threshold": never} if never and knobs.get("enabled")
                                        else {})} for name, knobs in JUDGES[judge].items()}
        return {"detectors": {**off, **detectors}, "streaming": "progressive",
                "action": action, "fail_mode": "open",
                "progressive": {"holdback_tokens": W, "rescore_every": K, "detector": judge,
                                "threshold": never}}
    return {"version": 1, "routes": [
        {"name": "fast", "match": {"header": "fast"}, "profile": "fast"},
        *({"name": j, "match": {"header": j}, "profile": j} for j in JUDGES),
        {"name": "default", "default": True, "profile": "fast"}],
        "profiles": {"fast": {"detectors": off, "action": "shadow", "fail_mode": "open"},
                     **{j: live(j) for j in JUDGES}}}


async def one_stream(client: httpx.AsyncClient, url: str, judge: str) -> list[float]:
    body = {"model": "fake", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    if judge == "none":  # the baseline relays the same top-20 logprobs (progressive strips
        body.update(logprobs=True, top_logprobs=20)  # them for a client that did not ask)
    sent, received = [], []
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                             headers={"x-hallgate-route": judge}) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            now = time.time()
            for choice in json.loads(line[5:]).get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    sent.append(float(text))
                    received.append(now)
    held = 0 if judge == "none" else W  # the baseline holds nothing back
    return [received[j] - sent[min(j + held, len(sent) - 1)] for j in range(len(sent))]


async def fast_loop(client: httpx.AsyncClient, url: str, stop: asyncio.Event) -> list[float]:
    body = {"model": "fake", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    out = []
    while not stop.is_set():
        start = time.perf_counter()
        resp = await client.post(f"{url}/v1/chat/completions", json=body,
                                 headers={"x-hallgate-route": "fast"})
        resp.raise_for_status()
        out.append(time.perf_counter() - start)
        await asyncio.sleep(0.05)
    return out


async def measure(url: str, streams: int, idle_s: float, judges: list[str], rounds: int,
                  pid: int) -> list[dict]:
    out = []
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=100)) as c:
        stop = asyncio.Event()
        idle = asyncio.ensure_future(fast_loop(c, url, stop))
        await asyncio.sleep(idle_s)
        stop.set()
        idle_lat = await idle
        for _ in range(rounds):
            for judge in judges:
                stop = asyncio.Event()
                load = os.getloadavg()[0]
                cpu, start = cpu_seconds(pid), time.perf_counter()
                loaded = asyncio.ensure_future(fast_loop(c, url, stop))
                lags = await asyncio.gather(*(one_stream(c, url, judge)
                                              for _ in range(streams)))
                stop.set()
                share = (cpu_seconds(pid) - cpu) / (time.perf_counter() - start)
                out.append({"judge": judge, **summary(lags, idle_lat, await loaded),
                            "gateway_cpu_share": share,
                            "load1": (load + os.getloadavg()[0]) / 2})
    return out


def summary(lags: list[list[float]], idle_lat: list[float], loaded_lat: list[float]) -> dict:
    lag = np.concatenate([np.array(x) for x in lags]) * 1000
    body = np.concatenate([np.array(x[:-W]) for x in lags]) * 1000  # released while
    # the upstream generates; the last W wait for the whole answer's judgement
    tail = np.concatenate([np.array(x[-W:]) for x in lags]) * 1000
    return {"streams": len(lags), "tokens_per_stream": statistics.median(len(x) for x in lags),
            "lag_p50_ms": float(np.percentile(lag, 50)),
            "lag_p99_ms": float(np.percentile(lag, 99)),
            "lag_max_ms": float(lag.max()),
            "body_lag_p99_ms": float(np.percentile(body, 99)),
            "body_lag_max_ms": float(body.max()),
            "tail_lag_p50_ms": float(np.percentile(tail, 50)),
            "tail_lag_max_ms": float(tail.max()),
            "fast_idle_p50_ms": 1000 * statistics.median(idle_lat),
            "fast_idle_p99_ms": 1000 * float(np.percentile(idle_lat, 99)),
            "fast_loaded_p50_ms": 1000 * statistics.median(loaded_lat),
            "fast_loaded_p99_ms": 1000 * float(np.percentile(loaded_lat, 99)),
            "fast_loaded_n": len(loaded_lat)}


def main(streams: int = typer.Option(32), tokens: int = typer.Option(1000),
         rate: float = typer.Option(50.0, help="tokens/s per stream"),
         idle_s: float = typer.Option(10.0, help="fast-path loop on the idle gateway"),
         judges: list[str] = typer.Option(list(JUDGES), "--judge", help="prefix judges "
                                          "(profiles), measured in turn"),
         rounds: int = typer.Option(1, help="rounds over the judges (alternating)"),
         action: str = typer.Option("annotate", help="the profiles' action: annotate (the "
                                    "tail is released when the upstream ends) or abstain "
                                    "(thresholds 1.0; the tail waits for the judgement)"),
         serve_fake_port: int = typer.Option(0, hidden=True)) -> None:
    if serve_fake_port:
        serve_fake(serve_fake_port, tokens, rate)
        return
    with tempfile.TemporaryDirectory(prefix="hallgate-lag-") as tmp_name, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        fake_port = free_port()
        fake = subprocess.Popen([sys.executable, __file__, "--serve-fake-port", str(fake_port),
                                 "--tokens", str(tokens), "--rate", str(rate)], cwd=REPO)
        stack.callback(stop_process, fake, 10)
        wait_ready(fake, f"http://127.0.0.1:{fake_port}/v1/models", "fake upstream")
        (tmp / "policy.yaml").write_text(yaml.safe_dump(policy(action)))
        port = free_port()
        config = {"host": "127.0.0.1", "port": port, "policy_file": str(tmp / "policy.yaml"),
                  "log_level": "warning", "models": [{
                      "name": "fake", "provider": "openai", "model": "fake-model",
                      "api_base": f"http://127.0.0.1:{fake_port}/v1"}]}
        (tmp / "gateway.yaml").write_text(yaml.safe_dump(config))
        url = f"http://127.0.0.1:{port}"
        proc = stack.enter_context(gateway([*gateway_command(), "--config",
                                            str(tmp / "gateway.yaml"), "--port", str(port)],
                                           url, REPO, tmp / "gateway.log"))
        results = asyncio.run(measure(url, streams, idle_s, judges, rounds, proc.pid))
    for result in results:
        print(json.dumps(result))
    fields = {"action": action}
    for judge in judges:
        mine = [r for r in results if r["judge"] == judge]
        for key in ("lag_p99_ms", "body_lag_p99_ms", "tail_lag_p50_ms", "fast_loaded_p99_ms",
                    "gateway_cpu_share", "load1"):
            values = [r[key] for r in mine]
            fields[f"{judge}_{key}"] = "/".join(f"{v:.2f}" for v in values)
    fields["fast_idle_p50_ms"] = f"{results[0]['fast_idle_p50_ms']:.2f}"
    fields["fast_idle_p99_ms"] = f"{results[0]['fast_idle_p99_ms']:.2f}"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    typer.run(main)
