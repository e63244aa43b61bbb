"""Gateway CPU per streamed answer: passthrough vs buffer vs progressive, by answer length.

    .venv/bin/python bench/streaming_cpu.py [--lengths 128,512,2048,4096] [--reps 3]
        [--prefix-detector mean_logprob] [--checkout /tmp/hallgate-base]

One fake upstream (tests/fake_upstream.py, in this process, no delay) answers every request
with ``length`` word tokens and their top-20 logprobs. One gateway (`hallgate serve`, its own
process) has one route per streaming mode; every profile enables HALT and uses action
`annotate`, so a progressive stream is judged every k tokens but never cut:

    passthrough   stream at once; HALT judges the whole answer after its last token
    buffer        hold the stream, HALT judges the whole answer, release it
    progressive   release W tokens behind the upstream; the prefix judge every k tokens;
                  HALT judges the whole answer at the end
    progressive-<detector>  (--prefix-detector, repeatable) progressive with that detector
                  enabled too and named as the prefix judge (`progressive.detector`)
    alone-<detector>  (--alone, repeatable) progressive with that detector the only one:
                  its prefix stream's state is also the whole answer's judgement (causal
                  HALT, the logprob scores), so nothing re-reads the answer

The gateway's CPU (user + system of its process tree, from /proc) is read before and after
each streamed answer, requests one at a time and interleaved across routes, so the shared
machine's load distorts the numbers less than wall time would. The median per answer is
reported, with progressive / buffer as the ratio the issue's target is stated in.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import typer
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.overhead import cpu_seconds, gateway_command, wait_ready  # noqa: E402
from proxy.embedded import free_port, stop_process  # noqa: E402
from tests.fake_upstream import FakeUpstream, Script  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OFF = {"enabled": False}


def policy(holdback: int, every: int, prefix_detectors: list[str],
           alone: list[str] = ()) -> dict:
    halt = {"halt": {"enabled": True}, "edfl": OFF, "semantic": OFF}
    knobs = {"holdback_tokens": holdback, "rescore_every": every}
    profiles = {mode: {"detectors": halt, "streaming": mode, "action": "annotate",
                       "fail_mode": "open"} for mode in ("passthrough", "buffer")}
    profiles["progressive"] = {"detectors": halt, "streaming": "progressive",
                               "progressive": knobs, "action": "annotate", "fail_mode": "open"}
    for det in prefix_detectors:
        profiles[f"progressive-{det}"] = {
            "detectors": {**halt, det: {"enabled": True}}, "streaming": "progressive",
            "progressive": {**knobs, "detector": det}, "action": "annotate",
            "combine": {"mode": "any"}, "fail_mode": "open"}
    for det in alone:
        profiles[f"alone-{det}"] = {
            "detectors": {**halt, "halt": OFF, det: {"enabled": True}},
            "streaming": "progressive", "progressive": {**knobs, "detector": det},
            "action": "annotate", "fail_mode": "open"}
    routes = [{"name": name, "match": {"header": name}, "profile": name} for name in profiles]
    routes.append({"name": "default", "default": True, "profile": "buffer"})
    return {"version": 1, "routes": routes, "profiles": profiles}


@contextlib.contextmanager
def gateway(argv: list[str], url: str, cwd: Path, log: Path):
    """``hallgate serve`` run from ``cwd`` (this checkout, or --checkout: another build
    of hallgate with this one's .venv) until the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "OPENAI_API_KEY": "x"})
        try:
            wait_ready(proc, f"{url}/readyz", "gateway")
            yield proc
        except Exception:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            stop_process(proc, 30)


def stream_answer(client: httpx.Client, url: str, route: str, max_tokens: int) -> int:
    """One streamed answer through ``route``; the content chunks the client received."""
    body = {"model": "fake", "stream": True, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Write at length."}]}
    chunks = 0
    with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                       headers={"x-hallgate-route": route}) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if line.startswith("data:") and line.strip() != "data: [DONE]":
                data = json.loads(line[5:])
                chunks += sum(1 for c in data.get("choices") or ()
                              if (c.get("delta") or {}).get("content"))
    return chunks


def main(lengths: str = typer.Option("128,512,2048,4096", help="answer lengths (tokens)"),
         reps: int = typer.Option(3, help="answers per route and length"),
         holdback: int = typer.Option(8, help="W: progressive.holdback_tokens"),
         every: int = typer.Option(8, help="k: progressive.rescore_every"),
         prefix_detector: list[str] = typer.Option([], help="also: progressive with this "
                                                   "prefix judge (e.g. mean_logprob)"),
         alone: list[str] = typer.Option([], help="also: progressive with this detector "
                                         "alone, its own final judge (e.g. halt_causal)"),
         halt_prefix: bool = typer.Option(True, help="measure the HALT-prefix progressive "
                                          "route (its CPU grows with T²)"),
         checkout: Path = typer.Option(REPO, help="the hallgate build whose gateway is "
                                       "measured (e.g. a `git worktree` of the base commit)"),
         json_out: Path = typer.Option(REPO / "runs" / "bench_streaming_cpu.json")) -> None:
    sizes = [int(x) for x in lengths.split(",")]
    routes = ["passthrough", "buffer", *(["progressive"] if halt_prefix else []),
              *(f"progressive-{d}" for d in prefix_detector), *(f"alone-{d}" for d in alone)]
    fake = FakeUpstream(Script(latency_s=0.0)).serve_in_thread()
    cpu: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="hallgate-streaming-cpu-") as tmp_name, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        (tmp / "policy.yaml").write_text(yaml.safe_dump(policy(holdback, every,
                                                               prefix_detector, alone)))
        port = free_port()
        config = {"host": "127.0.0.1", "port": port, "policy_file": str(tmp / "policy.yaml"),
                  "log_level": "warning", "models": [{
                      "name": "fake", "provider": "openai", "model": "fake-model",
                      "api_base": f"http://127.0.0.1:{fake.port}/v1"}]}
        (tmp / "gateway.yaml").write_text(yaml.safe_dump(config))
        url = f"http://127.0.0.1:{port}"
        proc = stack.enter_context(gateway(
            [*gateway_command(), "--config", str(tmp / "gateway.yaml"), "--port", str(port)],
            url, checkout.resolve(), tmp / "gateway.log"))
        client = stack.enter_context(httpx.Client(timeout=900))
        fake.script.text = " ".join(f"w{i}" for i in range(64))
        for route in routes:  # warm-up: compiled kernels, first-request paths
            stream_answer(client, url, route, 64)
        for n in sizes:
            fake.script.text = " ".join(f"w{i}" for i in range(n))
            for _ in range(reps):
                for route in routes:
                    before = cpu_seconds(proc.pid)
                    got = stream_answer(client, url, route, n)
                    cpu.setdefault((route, n), []).append(cpu_seconds(proc.pid) - before)
                    if got != n:
                        raise RuntimeError(f"{route}: {got} of {n} tokens reached the client")
            print(f"{n} tokens: " + ", ".join(
                f"{r} {1000 * statistics.median(cpu[r, n]):.0f} ms" for r in routes),
                file=sys.stderr, flush=True)
    fake.stop()
    med = {k: statistics.median(v) for k, v in cpu.items()}
    header = "| answer length | " + " | ".join(routes) + " | " + " | ".join(
        f"{r} / buffer" for r in routes if r.startswith(("progressive", "alone"))) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    result = {}
    for n in sizes:
        cells = [f"{1000 * med[r, n]:,.0f} ms" for r in routes]
        ratios = [med[r, n] / med["buffer", n] for r in routes
                  if r.startswith(("progressive", "alone"))]
        print(f"| {n:,} tokens | " + " | ".join(cells) + " | "
              + " | ".join(f"{x:.1f}x" for x in ratios) + " |")
        for r in routes:
            result[f"{r.replace('-', '_')}_ms_{n}"] = 1000 * med[r, n]
            if r.startswith(("progressive", "alone")):
                result[f"{r.replace('-', '_')}_over_buffer_{n}"] = med[r, n] / med["buffer", n]
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps({"cpu_s": {f"{r}@{n}": v for (r, n), v in cpu.items()},
                                    "reps": reps, "holdback": holdback, "every": every},
                                   indent=1))
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in result.items()))


if __name__ == "__main__":
    typer.run(main)
