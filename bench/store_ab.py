"""The store's cost on the request path: one gateway with ``store.sample: 1.0`` (or
``--sample``) against the same gateway with the store off, in one run.

    .venv/bin/python bench/store_ab.py [--sample 1.0] [--rounds 500] [--repeats 4]
                                       [--answer-words 100]

(wrk from scripts/bench_tools.sh; without it only concurrency 1 runs.)

One fake upstream (``tests.fake_upstream``, 20 ms) and two ``hallgate serve`` processes of
this checkout with the HALT-annotate route, one with every judged exchange sampled into a
SQLite store. Concurrency 1: the direct call and both gateways taken in turn, request by
request (bench/overhead.py's interleaved loop), JSON answers then streams; the store's
cost is the p50 of ``on`` minus the p50 of ``off``. Concurrency 64: wrk against each,
``--repeats`` times in alternating order (off/on, on/off, ...) so drift hits both alike;
the ratio of their mean req/s, and each server's CPU time per request (from /proc). At
the end the ``on`` gateway's counters: exchanges sampled, written and dropped.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import typer
import yaml
from overhead import (  # bench/overhead.py (this folder is on sys.path as the script's)
    POLICIES,
    Target,
    answer_of,
    cpu_seconds,
    gateway_command,
    interleaved,
    run_wrk,
    server,
    start_fake_upstream,
)

from proxy.embedded import free_port


def config(tmp: Path, name: str, port: int, fake_url: str, store: bool,
           sample: float) -> Path:
    policy = yaml.safe_load(yaml.safe_dump(POLICIES["halt"]))
    policy["routes"][0]["store"] = {"sample": sample}  # read only where the store is on
    policy_path = tmp / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
    cfg = {"host": "127.0.0.1", "port": port, "policy_file": str(policy_path),
           "log_level": "warning", "models": [{"name": "fake", "provider": "openai",
                                               "model": "fake-model",
                                               "api_base": f"{fake_url}/v1"}]}
    if store:
        cfg["store"] = {"path": str(tmp / "exchanges.sqlite3")}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def counter(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text,
                                            re.M))


def main(rounds: int = typer.Option(500, help="Interleaved rounds at concurrency 1."),
         seconds: float = typer.Option(10.0, help="Each wrk run at concurrency 64."),
         repeats: int = typer.Option(2, help="wrk runs per gateway, alternating."),
         latency_ms: float = typer.Option(20.0, help="The fake upstream's latency."),
         sample: float = typer.Option(1.0, help="The route's store.sample on `on`."),
         answer_words: int = typer.Option(0, help="The fake's answer in tokens (0: its "
                                          "own six).")) -> None:
    """Added p50 at c=1 and req/s at c=64 of the store, against the store off."""
    with tempfile.TemporaryDirectory(prefix="hallgate-store-ab-") as tmp, \
            contextlib.ExitStack() as stack:
        log_dir = Path(tmp)
        fake_url, _ = start_fake_upstream(stack, log_dir, latency_ms,
                                          answer_of(answer_words))
        targets = [Target("direct", fake_url, logprobs=True)]
        for name, store in (("off", False), ("on", True)):
            port = free_port()
            path = config(log_dir, name, port, fake_url, store, sample)
            proc = stack.enter_context(server(
                name, [*gateway_command(), "--config", str(path), "--port", str(port)],
                f"http://127.0.0.1:{port}/readyz", log_dir))
            targets.append(Target(name, f"http://127.0.0.1:{port}", pid=proc.pid))
        json_lat = interleaved(targets, rounds, alternate=True)
        stream_lat = interleaved(targets, rounds, stream=True, alternate=True)
        fields: dict[str, float] = {}
        for kind, lat in (("json", json_lat), ("stream", stream_lat)):
            direct = lat["direct"].p50_ms
            fields[f"c1_{kind}_off_added_p50_ms"] = lat["off"].p50_ms - direct
            fields[f"c1_{kind}_on_added_p50_ms"] = lat["on"].p50_ms - direct
            fields[f"c1_{kind}_store_p50_ms"] = lat["on"].p50_ms - lat["off"].p50_ms
            print(f"c=1 {kind:6s} direct p50 {direct:.2f} ms | off "
                  f"+{lat['off'].p50_ms - direct:.3f} ms | on +{lat['on'].p50_ms - direct:.3f}"
                  f" ms | errors {sum(v.errors for v in lat.values())}", flush=True)
        if shutil.which("wrk"):
            rps: dict[str, list[float]] = {"off": [], "on": []}
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            for i in range(repeats):
                pair = targets[1:] if i % 2 == 0 else targets[:0:-1]  # off/on, on/off, ...
                for target in pair:
                    before = cpu_seconds(target.pid)
                    result = run_wrk(target, 64, seconds)
                    cpu_ms = (cpu_seconds(target.pid) - before) * 1e3 / max(result.requests, 1)
                    rps[target.name].append(result.rps)
                    cpu[target.name].append(cpu_ms)
                    print(f"c=64 {target.name}: {result.rps:.0f} req/s p50 {result.p50_ms:.1f} ms"
                          f" cpu {cpu_ms:.2f} ms/req errors {result.errors}", flush=True)
            for name in rps:
                fields[f"c64_{name}_rps"] = sum(rps[name]) / len(rps[name])
                fields[f"c64_{name}_cpu_ms_per_req"] = sum(cpu[name]) / len(cpu[name])
            fields["c64_rps_ratio_on_over_off"] = fields["c64_on_rps"] / fields["c64_off_rps"]
        else:
            print("wrk not found (scripts/bench_tools.sh): concurrency 64 skipped")
        on = targets[2].url
        deadline = time.monotonic() + 30
        # requests wrk left in flight finish after it exits: wait until every sampled
        # exchange is written or dropped
        while time.monotonic() < deadline and counter(on, "hallgate_store_sampled_total") > (
                counter(on, "hallgate_store_written_total")
                + counter(on, "hallgate_store_dropped_total")):
            time.sleep(0.2)
        counts = {name: int(counter(on, f"hallgate_store_{name}_total"))
                  for name in ("sampled", "written", "dropped")}
    print(f"RESULT store_ab sample={sample} rounds={rounds} " + " ".join(
        f"{k}={v:.3f}" for k, v in fields.items()) + " " + " ".join(
        f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    typer.run(main)
