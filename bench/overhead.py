"""Gateway overhead: direct calls vs hallgate (passthrough, HALT-annotate) vs LiteLLM.

    .venv/bin/python bench/overhead.py          (after scripts/bench_tools.sh)

Every server is its own process, started by this script next to one fake upstream
(``tests.fake_upstream``, fixed latency, 20 ms by default):

    direct               client -> fake upstream, asking top-20 logprobs (what the HALT
                         route asks it for)
    direct-plain         client -> fake upstream, no logprobs (what the passthrough route
                         and the LiteLLM proxy ask it for)
    hallgate-passthrough client -> hallgate serve (every detector off)              -> fake
    hallgate-halt        client -> hallgate serve (HALT scores every answer, annotate) -> fake
    litellm-proxy        client -> litellm --num_workers 1 (litellm[proxy], .bench-venv/) -> fake
    hallgate-litellm     (--litellm-path) hallgate's litellm.acompletion path           -> fake

Each target's added latency is over its baseline: the direct call that asks the upstream
for exactly what that target asks it for (a route with every detector off asks for no
logprobs; a route where HALT reads them asks for top-20).

Concurrency 1: one Python client interleaves the targets request by request (direct,
passthrough, halt, ..., direct, ...), so drift in the machine's load hits all alike; added
latency = a target's percentile minus its baseline's same percentile. Streaming: the
same, for the time to the first content chunk (direct-plain vs passthrough). Concurrency 64 and
500: wrk (C; bench/wrk_chat.lua), one target after another, with the server's CPU time
per request read from /proc. Then 500 requests at once, and the gateway's VmRSS before and
after N more requests at concurrency 64.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import typer
import yaml

from proxy.embedded import free_port, stop_process

REPO = Path(__file__).resolve().parent.parent
WRK_SCRIPT = REPO / "bench" / "wrk_chat.lua"
BENCH_VENV = REPO / ".bench-venv"
OFF = {"enabled": False}
POLICIES = {  # one route, one profile each
    "passthrough": {  # every detector off: forwarding only
        "version": 1,
        "routes": [{"name": "default", "default": True, "profile": "passthrough"}],
        "profiles": {"passthrough": {
            "description": "bench: every detector off",
            "detectors": {"halt": OFF, "edfl": OFF, "semantic": OFF},
            "action": "shadow", "fail_mode": "open"}}},
    "halt": {  # what `make run`'s default route does: HALT judges, the answer is annotated
        "version": 1,
        "routes": [{"name": "default", "default": True, "profile": "annotate-halt"}],
        "profiles": {"annotate-halt": {
            "description": "bench: HALT on every answer, annotate",
            "detectors": {"halt": {"enabled": True}, "edfl": OFF, "semantic": OFF},
            "action": "annotate", "fail_mode": "open"}}},
}
FAKE_KEY_ENV = "BENCH_FAKE_API_KEY"  # the litellm path wants some key; the fake ignores it


@dataclass(frozen=True)
class WrkResult:
    connections: int
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    socket_errors: int  # connect + read + write + timeout
    non_2xx: int  # wrk's "Non-2xx or 3xx responses"
    server_cpu_ms: float | None = None  # CPU time of the target's server per request

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    model: str = "fake"
    pid: int | None = None  # the server process (its CPU time is counted per request)
    rss: bool = False  # read this process's VmRSS before and after N requests
    logprobs: bool = False  # ask for top-20 logprobs (the direct baseline does)
    baseline: str | None = None  # the direct target that asks the upstream what this one does


@dataclass(frozen=True)
class Latencies:
    """Client-side latencies of one target in the interleaved concurrency-1 run."""

    n: int
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class TargetResult:
    name: str
    c1: Latencies
    c64: WrkResult | None  # None with --c1-only (as are c500 and burst500)
    c500: WrkResult | None
    burst500: dict[str, int] | None  # 500 requests at once: ok / non_200 / exceptions
    rss_mb: dict[str, float] | None = None  # start / before / after, gateways only
    rss_requests: int = 0  # requests between rss before and after
    ttft: Latencies | None = None  # streaming: time to the first content chunk
    baseline: str | None = None  # see Target.baseline


# --------------------------------------------------------------------------- processes


def wait_ready(proc: subprocess.Popen, url: str, name: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{name} not ready at {url} after {timeout_s:.0f}s")


@contextlib.contextmanager
def server(name: str, argv: list[str], ready_url: str, log_dir: Path,
           env: dict[str, str | None] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``argv`` as a separate process until the block ends; its output goes to a log.
    ``env`` adds variables to this process's environment; a None value removes one."""
    log_path = log_dir / f"{name}.log"
    child_env = {**os.environ, **(env or {})}
    child_env = {k: v for k, v in child_env.items() if v is not None}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env=child_env)
        try:
            wait_ready(proc, ready_url, name)
            yield proc
        except Exception:
            print(f"--- {name} log ({log_path}) ---\n{log_path.read_text()[-3000:]}",
                  file=sys.stderr)
            raise
        finally:
            stop_process(proc, 30)


def start_fake_upstream(stack: contextlib.ExitStack, log_dir: Path,
                        latency_ms: float, text: str | None = None) -> tuple[str, subprocess.Popen]:
    """The fake upstream (``tests.fake_upstream``) as its own process until ``stack``
    closes: its URL (``http://127.0.0.1:PORT``) and its process. ``text``: its answer
    (None: the fake's own, six tokens)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = stack.enter_context(server("fake-upstream", [
        sys.executable, "-m", "tests.fake_upstream", "--port", str(port),
        "--latency-ms", str(latency_ms), *(["--text", text] if text else [])],
        f"{url}/v1/models", log_dir))
    return url, proc


def answer_of(words: int) -> str | None:
    """An answer of ``words`` word tokens for the fake upstream (0: None, its own)."""
    sentence = "Paris is the capital of France and its largest city .".split()
    return " ".join(sentence[i % len(sentence)] for i in range(words)) or None


def vm_rss_mb(pid: int) -> float:
    """Resident set size of one process, from /proc/PID/status (VmRSS, in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a server may run its work in child processes)."""
    tree = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            tree += process_tree(int(child))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants, from /proc/PID/stat."""
    total_ticks = 0
    for p in process_tree(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total_ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total_ticks / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- load


def run_wrk(target: Target, connections: int, seconds: float) -> WrkResult:
    """One wrk run against the target's /v1/chat/completions; 2 threads."""
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(WRK_SCRIPT), f"{target.url}/v1/chat/completions"]
    env = {**os.environ, "WRK_MODEL": target.model, "WRK_LOGPROBS": "1" if target.logprobs
           else "0"}
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = sum(summary[k] for k in ("err_connect", "err_read", "err_write",
                                             "err_timeout"))
    return WrkResult(connections=connections, requests=summary["requests"],
                     duration_s=summary["duration_us"] / 1e6,
                     p50_ms=summary["p50_us"] / 1e3, p99_ms=summary["p99_us"] / 1e3,
                     socket_errors=socket_errors,
                     non_2xx=int(non_2xx.group(1)) if non_2xx else 0)


def check_answers(url: str, model: str, name: str) -> None:
    """One request by hand: the target must really answer with the fake's text."""
    body = {"model": model, "messages": [{"role": "user", "content": "capital of France?"}],
            "max_tokens": 16}
    resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30.0)
    text = resp.json()["choices"][0]["message"]["content"] if resp.status_code == 200 else ""
    if "Paris" not in text:
        raise RuntimeError(f"{name}: unexpected answer {resp.status_code} {resp.text[:300]}")
    if name == "hallgate-halt" and "risk" not in resp.json()["hallgate"]["detectors"]["halt"]:
        raise RuntimeError(f"{name}: HALT did not score the answer: {resp.text[:300]}")


def chat_body(target: Target, stream: bool = False) -> bytes:
    body = {"model": target.model, "max_tokens": 16,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    if target.logprobs:
        body |= {"logprobs": True, "top_logprobs": 20}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed_request(conn: http.client.HTTPConnection, body: bytes, stream: bool) -> float | None:
    """Seconds to the whole answer, or with ``stream`` to the first content chunk."""
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if not stream:
        resp.read()
        return time.perf_counter() - start if resp.status == 200 else None
    first = None
    for line in resp:
        if first is None and line.startswith(b"data:") and _has_content(line[5:]):
            first = time.perf_counter() - start
    return first if resp.status == 200 else None


def _has_content(data: bytes) -> bool:
    if data.strip() == b"[DONE]":
        return False
    choices = json.loads(data).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


def interleaved(targets: list[Target], rounds: int, stream: bool = False,
                alternate: bool = False) -> dict[str, Latencies]:
    """Concurrency 1, one keep-alive connection per target, targets taken in turn.
    ``alternate``: every other round takes the targets after the first in reverse order,
    so that none is always the one right after another (an A/A of two identical gateways
    put the second 0.01-0.1 ms behind the first at the p50)."""
    conns = {t.name: http.client.HTTPConnection(t.url.removeprefix("http://"), timeout=30)
             for t in targets}
    bodies = {t.name: chat_body(t, stream) for t in targets}
    times: dict[str, list[float]] = {t.name: [] for t in targets}
    errors = dict.fromkeys(times, 0)
    reverse = [targets[0], *targets[:0:-1]]
    for i in range(rounds + 20):  # the first 20 rounds warm up
        for t in (reverse if alternate and i % 2 else targets):
            took = timed_request(conns[t.name], bodies[t.name], stream)
            if took is None:
                errors[t.name] += 1
            elif i >= 20:
                times[t.name].append(took * 1e3)
    for conn in conns.values():
        conn.close()
    return {name: Latencies(len(v), percentile(v, 50), percentile(v, 99), errors[name])
            for name, v in times.items()}


def run_phase(label: str, targets: list[Target], connections: int,
              seconds: float) -> dict[str, WrkResult]:
    """One wrk run per target, back to back, so a change in the machine's load during the
    bench hits every target alike."""
    load = os.getloadavg()[0]
    results = {}
    for t in targets:
        cpu_before = cpu_seconds(t.pid) if t.pid is not None else None
        result = run_wrk(t, connections, seconds)
        if cpu_before is not None and result.requests:
            cpu_ms = (cpu_seconds(t.pid) - cpu_before) * 1e3 / result.requests
            result = dataclasses.replace(result, server_cpu_ms=cpu_ms)
        results[t.name] = result
    print(f"{label} (load average {load:.1f} before): " + " | ".join(
        f"{name} {r.rps:.0f} req/s p50 {r.p50_ms:.1f} p99 {r.p99_ms:.1f} ms err {r.errors} "
        f"cpu {r.server_cpu_ms or 0:.2f} ms/req" for name, r in results.items()), flush=True)
    return results


async def burst(url: str, model: str, n: int, timeout_s: float) -> dict[str, int]:
    """``n`` requests sent at once on ``n`` connections; count what came back."""
    body = {"model": model, "messages": [{"role": "user", "content": "capital of France?"}],
            "max_tokens": 16}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:
        replies = await asyncio.gather(
            *(client.post(f"{url}/v1/chat/completions", json=body) for _ in range(n)),
            return_exceptions=True)
    ok = sum(1 for r in replies if isinstance(r, httpx.Response) and r.status_code == 200)
    failed = sum(1 for r in replies if isinstance(r, httpx.Response) and r.status_code != 200)
    return {"ok": ok, "non_200": failed, "exceptions": n - ok - failed}


def run_bursts(targets: list[Target], opts: BenchOptions) -> dict[str, dict[str, int]]:
    out = {}
    for t in targets:
        start = time.perf_counter()
        out[t.name] = counts = asyncio.run(burst(t.url, t.model, 500, opts.burst_timeout_s))
        print(f"500 at once -> {t.name}: {counts} in {time.perf_counter() - start:.1f} s",
              flush=True)
    return out


def measure_rss(result: TargetResult, target: Target, start_mb: float,
                opts: BenchOptions) -> None:
    """VmRSS after warm-up and the timed phases, then after >= N more requests at c64."""
    before = vm_rss_mb(target.pid)
    seconds = math.ceil(opts.rss_requests / max(result.c64.rps, 1.0) * 1.15) + 1
    run = run_wrk(target, 64, min(seconds, opts.rss_max_s))
    after = vm_rss_mb(target.pid)
    result.rss_mb = {"start": start_mb, "before": before, "after": after}
    result.rss_requests = run.requests
    print(f"  {result.name}: RSS {start_mb:.1f} MB at start, {before:.1f} MB after warm-up, "
          f"{after:.1f} MB after {run.requests} more requests ({run.errors} errors)",
          flush=True)


def measure_all(targets: list[Target], opts: BenchOptions) -> list[TargetResult]:
    for t in targets:
        check_answers(t.url, t.model, t.name)
    start_rss = {t.name: vm_rss_mb(t.pid) for t in targets if t.rss}
    run_phase("warm-up c8", targets, 8, opts.warmup_s)
    c1 = interleaved(targets, opts.c1_rounds)
    print("concurrency 1, interleaved: " + " | ".join(
        f"{name} p50 {r.p50_ms:.2f} p99 {r.p99_ms:.2f} ms err {r.errors}"
        for name, r in c1.items()), flush=True)
    streaming = [t for t in targets if t.name in ("direct-plain", "hallgate-passthrough")]
    ttft = interleaved(streaming, opts.c1_rounds, stream=True)
    print("streaming, time to first content chunk: " + " | ".join(
        f"{name} p50 {r.p50_ms:.2f} p99 {r.p99_ms:.2f} ms err {r.errors}"
        for name, r in ttft.items()), flush=True)
    if opts.c1_only:
        return [TargetResult(t.name, c1[t.name], None, None, None, ttft=ttft.get(t.name),
                             baseline=t.baseline) for t in targets]
    c64 = run_phase("concurrency 64", targets, 64, opts.c64_s)
    c500 = run_phase("500 connections", targets, 500, opts.c500_s)
    bursts = run_bursts(targets, opts)
    results = [TargetResult(t.name, c1[t.name], c64[t.name], c500[t.name], bursts[t.name],
                            ttft=ttft.get(t.name), baseline=t.baseline) for t in targets]
    for result, t in zip(results, targets, strict=True):
        if t.rss:
            measure_rss(result, t, start_rss[t.name], opts)
    return results


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class BenchOptions:
    latency_ms: float = 20.0  # the fake upstream's fixed latency
    warmup_s: float = 3.0  # concurrency 8, not measured
    c1_rounds: int = 400  # interleaved concurrency-1 rounds (one request per target each)
    c64_s: float = 15.0  # 64 connections: throughput and loaded latency
    c500_s: float = 5.0  # 500 connections: socket errors, non-2xx
    burst_timeout_s: float = 120.0  # 500 requests at once: each must answer 200 by then
    rss_requests: int = 50_000  # requests between the two RSS readings
    rss_max_s: float = 120.0  # ...unless that takes longer (a starved machine)
    litellm_proxy: bool = True  # False: skip the peer (e.g. .bench-venv absent)
    litellm_path: bool = False  # also measure hallgate's litellm.acompletion path
    c1_only: bool = False  # only the concurrency-1 and streaming latencies (quick A/B runs)


def gateway_config(tmp: Path, name: str, port: int, model: dict, policy_name: str) -> Path:
    policy = tmp / f"{policy_name}_policy.yaml"
    policy.write_text(yaml.safe_dump(POLICIES[policy_name], sort_keys=False))
    config = {"host": "127.0.0.1", "port": port, "policy_file": str(policy),
              "log_level": "warning", "models": [{"name": "fake", **model}]}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def litellm_proxy_config(tmp: Path, fake_base: str) -> Path:
    config = {"model_list": [{"model_name": "fake", "litellm_params": {
        "model": "openai/fake-model", "api_base": fake_base, "api_key": "x"}}],
        "litellm_settings": {"set_verbose": False, "telemetry": False}}
    path = tmp / "litellm_proxy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def gateway_command() -> list[str]:
    """`hallgate serve` as the gateway's own module runs it: the same in every build
    (bench/ab_c1.py points PYTHONPATH at another checkout)."""
    return [str(REPO / ".venv" / "bin" / "python"), "-m", "proxy.cli", "serve"]


def start_gateway(stack: contextlib.ExitStack, name: str, model: dict, tmp: Path,
                  policy_name: str = "passthrough", baseline: str = "direct-plain") -> Target:
    port = free_port()
    config = gateway_config(tmp, name, port, model, policy_name)
    url = f"http://127.0.0.1:{port}"
    argv = [*gateway_command(), "--config", str(config), "--port", str(port)]
    proc = stack.enter_context(server(name, argv, f"{url}/readyz", tmp,
                                      env={FAKE_KEY_ENV: "x"}))
    return Target(name, url, pid=proc.pid, rss=True, baseline=baseline)


def start_litellm_proxy(stack: contextlib.ExitStack, fake_base: str, tmp: Path) -> Target:
    port = free_port()
    argv = [str(BENCH_VENV / "bin" / "litellm"), "--config",
            str(litellm_proxy_config(tmp, fake_base)), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1"]
    env: dict[str, str | None] = {  # no database, no auth (like the gateway here)
        "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "DATABASE_URL": None,
        "LITELLM_MASTER_KEY": None, "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"}
    url = f"http://127.0.0.1:{port}"
    proc = stack.enter_context(server("litellm-proxy", argv, f"{url}/health/liveliness", tmp,
                                      env=env))
    return Target("litellm-proxy", url, pid=proc.pid, baseline="direct-plain")


def run_all(tmp: Path, opts: BenchOptions) -> list[TargetResult]:
    """Start the fake upstream and every target, each its own process; idle servers cost
    next to nothing, and one wrk runs at a time."""
    with contextlib.ExitStack() as stack:
        fake_url, fake = start_fake_upstream(stack, tmp, opts.latency_ms)
        fake_base = f"{fake_url}/v1"
        lean = {"provider": "openai", "model": "fake-model", "api_base": fake_base}
        targets = [Target("direct", fake_url, pid=fake.pid, logprobs=True),
                   Target("direct-plain", fake_url, pid=fake.pid),
                   start_gateway(stack, "hallgate-passthrough", lean, tmp),
                   start_gateway(stack, "hallgate-halt", lean, tmp, policy_name="halt",
                                 baseline="direct")]
        if opts.litellm_path:
            targets.append(start_gateway(stack, "hallgate-litellm", {
                "provider": "litellm", "model": "openai/fake-model", "api_base": fake_base,
                "api_key_env": FAKE_KEY_ENV}, tmp))
        if opts.litellm_proxy:
            targets.append(start_litellm_proxy(stack, fake_base, tmp))
        return measure_all(targets, opts)


# --------------------------------------------------------------------------- report


def added(target: TargetResult, by_name: dict[str, TargetResult], phase: str = "c1",
          pct: str = "p50_ms") -> float:
    """Added latency: the target's percentile minus its baseline's same percentile."""
    base = by_name[target.baseline or target.name]
    return getattr(getattr(target, phase), pct) - getattr(getattr(base, phase), pct)


def print_table(results: list[TargetResult]) -> None:
    by_name = {r.name: r for r in results}
    print(f"\n{'target':<21} {'c1 p50':>7} {'c1 p99':>7} {'+p50':>6} {'+p99':>6} "
          f"{'c64 req/s':>9} {'c64 p50':>8} {'c64 p99':>8} {'c500 err':>8} {'burst err':>9} "
          f"{'cpu ms/req':>10}")
    for r in results:
        print(f"{r.name:<21} {r.c1.p50_ms:7.2f} {r.c1.p99_ms:7.2f} "
              f"{added(r, by_name):6.2f} {added(r, by_name, pct='p99_ms'):6.2f} "
              f"{r.c64.rps:9.0f} {r.c64.p50_ms:8.2f} {r.c64.p99_ms:8.2f} {r.c500.errors:8d} "
              f"{burst_errors(r):9d} {r.c64.server_cpu_ms or 0:10.2f}")
    print("(ms; c1 = interleaved concurrency 1, + = added over the target's baseline in this "
          "run: direct for the HALT route, direct-plain for passthrough and the LiteLLM proxy; "
          "c500 err = wrk socket errors + non-2xx at 500 connections; burst err = of 500 "
          "requests sent at once, those not answered 200; cpu = server CPU time per request "
          "at c64, for direct the fake upstream's)")


def burst_errors(r: TargetResult) -> int:
    return r.burst500["non_200"] + r.burst500["exceptions"]


def result_line(by_name: dict[str, TargetResult]) -> str:
    direct, plain = by_name["direct"], by_name["direct-plain"]
    fields: dict[str, float | int] = {"direct_p50_ms": direct.c1.p50_ms,
                                      "direct_rps_c64": direct.c64.rps,
                                      "direct_plain_p50_ms": plain.c1.p50_ms,
                                      "direct_plain_rps_c64": plain.c64.rps}
    for key, name in (("passthrough", "hallgate-passthrough"), ("halt", "hallgate-halt"),
                      ("litellm_path", "hallgate-litellm"), ("litellm_proxy", "litellm-proxy")):
        r = by_name.get(name)
        if r is None:
            continue
        fields |= {f"{key}_added_p50_ms": added(r, by_name),
                   f"{key}_added_p99_ms": added(r, by_name, pct="p99_ms"),
                   f"{key}_rps_c64": r.c64.rps,
                   f"{key}_cpu_ms_per_req": r.c64.server_cpu_ms or 0.0,
                   f"{key}_errors_c500": r.c500.errors + burst_errors(r)}
    peer = by_name.get("litellm-proxy")
    if peer is not None:
        for key in ("passthrough", "halt"):
            fields[f"{key}_vs_litellm_rps"] = fields[f"{key}_rps_c64"] / peer.c64.rps
    gw = by_name["hallgate-passthrough"]
    if gw.ttft is not None and plain.ttft is not None:
        fields["stream_ttft_added_p50_ms"] = added(gw, by_name, phase="ttft")
    fields |= {"errors_total": sum(r.c1.errors + r.c64.errors for r in by_name.values()),
               "rss_requests": gw.rss_requests,
               "rss_growth_mb": gw.rss_mb["after"] - gw.rss_mb["before"],
               "halt_rss_growth_mb": by_name["hallgate-halt"].rss_mb["after"]
               - by_name["hallgate-halt"].rss_mb["before"]}
    return "RESULT " + " ".join(
        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


def c1_result_line(by_name: dict[str, TargetResult]) -> str:
    """The RESULT line of a --c1-only run: every target's p50, each one's added p50."""
    fields = {f"{name.replace('-', '_')}_p50_ms": r.c1.p50_ms for name, r in by_name.items()}
    fields |= {f"{name.replace('-', '_')}_added_p50_ms": added(r, by_name)
               for name, r in by_name.items() if r.baseline}
    gw = by_name["hallgate-passthrough"]
    if gw.ttft is not None:
        fields["stream_ttft_added_p50_ms"] = added(gw, by_name, phase="ttft")
    return "RESULT " + " ".join(f"{k}={v:.2f}" for k, v in fields.items())


def save_json(path: Path, results: list[TargetResult], opts: BenchOptions) -> None:
    rows = [{**asdict(r), "c64_rps": r.c64.rps} for r in results]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"options": asdict(opts), "cpus": os.cpu_count(),
                                "results": rows}, indent=2))


# --------------------------------------------------------------------------- main


def raise_open_files_limit() -> None:
    """500 client connections plus the servers' sockets need more than 1024 descriptors;
    children (wrk, the servers) inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(
    latency_ms: float = typer.Option(20.0, help="The fake upstream's fixed latency."),
    c64_seconds: float = typer.Option(15.0, help="Length of the concurrency-64 run."),
    rss_requests: int = typer.Option(50_000, help="Requests between the RSS readings."),
    c1_rounds: int = typer.Option(400, help="Interleaved concurrency-1 rounds."),
    litellm_path: bool = typer.Option(False, help="Also measure hallgate's litellm path."),
    c1_only: bool = typer.Option(False, help="Only the concurrency-1 and streaming "
                                 "latencies: a quick A/B of two builds."),
    litellm_proxy: bool = typer.Option(True, help="Measure the LiteLLM proxy too "
                                       "(needs .bench-venv)."),
    nice: int = typer.Option(0, help="Scheduling priority change for the bench and its "
                             "servers (negative = before other work; needs root)."),
    json_out: Path = typer.Option(REPO / "runs" / "bench_overhead.json",
                                  help="Where the raw numbers go."),
) -> None:
    """Overhead of hallgate (passthrough, HALT) and of the LiteLLM proxy over direct calls."""
    if shutil.which("wrk") is None:
        raise typer.BadParameter("wrk not found: run scripts/bench_tools.sh")
    has_peer = litellm_proxy and (BENCH_VENV / "bin" / "litellm").exists()
    if litellm_proxy and not has_peer:
        print("NOTE: .bench-venv/bin/litellm missing (scripts/bench_tools.sh installs it); "
              "the LiteLLM proxy is skipped", file=sys.stderr)
    opts = BenchOptions(latency_ms=latency_ms, c64_s=c64_seconds, rss_requests=rss_requests,
                        litellm_proxy=has_peer, litellm_path=litellm_path, c1_rounds=c1_rounds,
                        c1_only=c1_only)
    raise_open_files_limit()
    if nice:
        os.nice(nice)  # the servers and wrk inherit it
    print(f"gateway command: {' '.join(gateway_command())}")
    print(f"cpus={os.cpu_count()} load average at start={os.getloadavg()[0]:.2f} "
          f"nice={os.nice(0)} upstream latency={latency_ms} ms, "
          f"load generator: wrk ({WRK_SCRIPT.name})",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="hallgate-overhead-") as tmp:
        results = run_all(Path(tmp), opts)
    if c1_only:
        print(c1_result_line({r.name: r for r in results}))
        return
    print_table(results)
    save_json(json_out, results, opts)
    print(result_line({r.name: r for r in results}))


if __name__ == "__main__":
    typer.run(main)
