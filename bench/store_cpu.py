"""Where the store's cost lands in the gateway process: CPU per request of each thread
and the collector's time, store off against ``store.sample: 1.0``, in one run.

    .venv/bin/python bench/store_cpu.py [--seconds 8] [--repeats 2] [--answer-words 100]

The same two gateways as bench/store_ab.py (HALT-annotate route, fake upstream at 20 ms,
one with a SQLite store keeping every judged exchange), each run as bench/serve_gc.py;
wrk at concurrency 64 against each in alternating order. Per request: the CPU of each of
the process's threads (from /proc: the event loop's thread, the rest), and the wall time
inside garbage collections per generation; and the CPU of the gateway's child processes
(the store's writer process); and the share of the machine's CPU in use while wrk ran.
The store's share is the difference; ``rps_ratio_from_gateway_cpu`` is the req/s ratio
that the gateway's own CPU per request gives, the writer process's share left out.
``--answer-words``: the fake upstream's answer length in tokens (default: its own six),
each with 20 alternatives.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import typer
from overhead import (  # this folder is on sys.path
    Target,
    answer_of,
    cpu_seconds,
    run_wrk,
    server,
    start_fake_upstream,
)
from store_ab import config

from proxy.embedded import free_port

REPO = Path(__file__).resolve().parents[1]


def thread_cpu(pid: int) -> dict[str, float]:
    """Thread id -> its CPU seconds (utime + stime)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[task.name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def machine_ticks() -> tuple[int, int]:
    """The machine's CPU ticks since boot, all and idle (iowait counted idle): /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


def children_cpu(pid: int) -> float:
    """CPU seconds of the process's descendants (the store's writer process): its tree's
    less its own threads' (a thread that has exited counts here too; the `off` gateway's
    figure shows how much that is)."""
    return cpu_seconds(pid) - sum(thread_cpu(pid).values())


def gc_totals(pid: int, path: Path) -> dict:
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)
    return json.loads(path.read_text())["gc"]


def main(seconds: float = typer.Option(8.0), repeats: int = typer.Option(2),
         answer_words: int = typer.Option(0, help="The fake's answer in tokens (0: its "
                                          "own six).")) -> None:
    with tempfile.TemporaryDirectory(prefix="hallgate-store-cpu-") as tmp, \
            contextlib.ExitStack() as stack:
        log_dir = Path(tmp)
        fake_url, _ = start_fake_upstream(stack, log_dir, 20.0, answer_of(answer_words))
        targets = []
        for name, store in (("off", False), ("on", True)):
            port = free_port()
            path = config(log_dir, name, port, fake_url, store, 1.0)
            gc_out = log_dir / f"{name}.gc.json"
            proc = stack.enter_context(server(
                name, [sys.executable, str(REPO / "bench" / "serve_gc.py"), "--config",
                       str(path), "--port", str(port)],
                f"http://127.0.0.1:{port}/readyz", log_dir, env={"GC_OUT": str(gc_out)}))
            targets.append((Target(name, f"http://127.0.0.1:{port}", pid=proc.pid), gc_out))
        sums: dict[str, dict[str, float]] = {"off": {}, "on": {}}
        for i in range(repeats):
            for target, gc_out in (targets if i % 2 == 0 else targets[::-1]):
                gc_before, cpu_before = gc_totals(target.pid, gc_out), thread_cpu(target.pid)
                children_before, ticks_before = children_cpu(target.pid), machine_ticks()
                result = run_wrk(target, 64, seconds)
                ticks_after = machine_ticks()
                cpu_after, gc_after = thread_cpu(target.pid), gc_totals(target.pid, gc_out)
                children = children_cpu(target.pid) - children_before
                n = max(result.requests, 1)
                per_thread = sorted(((cpu_after[t] - cpu_before.get(t, 0.0)) * 1e3 / n, t)
                                    for t in cpu_after)
                loop = (cpu_after[str(target.pid)] - cpu_before[str(target.pid)]) * 1e3 / n
                total = sum(v for v, _ in per_thread)
                gc_ms = sum(gc_after[g][1] - gc_before[g][1] for g in gc_after) * 1e3 / n
                fields = {"rps": result.rps, "cpu_ms": total, "loop_cpu_ms": loop,
                          "other_threads_cpu_ms": total - loop, "gc_ms": gc_ms,
                          "writer_process_cpu_ms": children * 1e3 / n,
                          # the share of both cores in use: below 1, the gateway's own
                          # thread (the event loop under the GIL) is what bounds its req/s
                          "machine_busy": 1 - (ticks_after[1] - ticks_before[1])
                          / max(ticks_after[0] - ticks_before[0], 1)}
                for key, value in fields.items():
                    sums[target.name][key] = sums[target.name].get(key, 0.0) + value / repeats
                print(f"{target.name}: {result.rps:.0f} req/s, per request: CPU "
                      f"{total:.3f} ms (event loop {loop:.3f}, other threads "
                      f"{total - loop:.3f}), in GC {gc_ms:.3f} ms; its writer process "
                      f"{fields['writer_process_cpu_ms']:.3f} ms; machine busy "
                      f"{fields['machine_busy']:.2f}", flush=True)
    out = {f"{name}_{k}": v for name, values in sums.items() for k, v in values.items()}
    out["rps_ratio_on_over_off"] = sums["on"]["rps"] / sums["off"]["rps"]
    # the ratio the gateway's own CPU per request gives (its threads under one GIL bound
    # its req/s): what the store's request path costs, its writer process left out; the
    # measured ratio is below it by what the writer process takes from the shared cores
    out["rps_ratio_from_gateway_cpu"] = sums["off"]["cpu_ms"] / sums["on"]["cpu_ms"]
    out["store_loop_cpu_ms"] = sums["on"]["loop_cpu_ms"] - sums["off"]["loop_cpu_ms"]
    out["store_gc_ms"] = sums["on"]["gc_ms"] - sums["off"]["gc_ms"]
    print("RESULT store_cpu " + " ".join(f"{k}={v:.3f}" for k, v in out.items()))


if __name__ == "__main__":
    typer.run(main)
