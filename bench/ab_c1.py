"""Two builds of hallgate side by side at concurrency 1: is a change faster, in one run?

Runs between sessions on this VM differ by more than one change saves (docs/BENCHMARKS.md),
so a change is judged against the build before it in the same run: one fake upstream
(``tests.fake_upstream``, 20 ms), the direct call and both gateways taken in turn,
request by request (bench/overhead.py's interleaved ``http.client`` loop), JSON answers
first, then streams (time to the first content chunk).

    git worktree add /tmp/hallgate-base <commit>      # the other build, same .venv
    .venv/bin/python bench/ab_c1.py --base /tmp/hallgate-base [--policy halt]

Each gateway is ``hallgate serve`` from this checkout's .venv with PYTHONPATH set to its
build, so only hallgate's own code differs.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import typer
from overhead import (  # bench/overhead.py (this folder is on sys.path as the script's)
    POLICIES,
    REPO,
    Target,
    gateway_command,
    gateway_config,
    interleaved,
    server,
    start_fake_upstream,
)

from proxy.embedded import free_port


def main(base: Path = typer.Option(..., exists=True, file_okay=False,
                                   help="A checkout of the build to compare against."),
         policy: str = typer.Option("passthrough", help=f"One of {sorted(POLICIES)}."),
         rounds: int = typer.Option(500, help="Interleaved rounds, each kind of answer."),
         latency_ms: float = typer.Option(20.0, help="The fake upstream's latency.")) -> None:
    """Added p50 of two gateway builds over the same direct call, in one run."""
    if policy not in POLICIES:
        raise typer.BadParameter(f"--policy must be one of {sorted(POLICIES)}")
    builds = {"base": base.resolve(), "new": REPO}
    with tempfile.TemporaryDirectory(prefix="hallgate-ab-") as tmp, \
            contextlib.ExitStack() as stack:
        log_dir = Path(tmp)
        fake_url, _ = start_fake_upstream(stack, log_dir, latency_ms)
        # the direct call asks the upstream what the route asks it (top-20 where HALT reads)
        targets = [Target("direct", fake_url, logprobs=policy == "halt")]
        lean = {"provider": "openai", "model": "fake-model", "api_base": f"{fake_url}/v1"}
        for name, path in builds.items():
            port = free_port()
            config = gateway_config(log_dir, name, port, lean, policy)
            stack.enter_context(server(name, [*gateway_command(), "--config", str(config),
                                              "--port", str(port)],
                                       f"http://127.0.0.1:{port}/readyz", log_dir,
                                       env={"PYTHONPATH": str(path)}))
            targets.append(Target(name, f"http://127.0.0.1:{port}"))
        json_lat = interleaved(targets, rounds)
        stream_lat = interleaved(targets, rounds, stream=True)

    fields: dict[str, float] = {}
    for kind, lat in (("json", json_lat), ("stream", stream_lat)):
        direct = lat["direct"].p50_ms
        for name in builds:
            fields[f"{kind}_{name}_added_p50_ms"] = lat[name].p50_ms - direct
        fields[f"{kind}_new_minus_base_ms"] = lat["new"].p50_ms - lat["base"].p50_ms
        print(f"{kind:6s} direct p50 {direct:.2f} ms | " + " | ".join(
            f"{name} +{lat[name].p50_ms - direct:.3f} ms (errors {lat[name].errors})"
            for name in builds))
    errors = sum(v.errors for lat in (json_lat, stream_lat) for v in lat.values())
    print(f"RESULT policy={policy} " + " ".join(f"{k}={v:.3f}" for k, v in fields.items())
          + f" rounds={rounds} errors={errors}")


if __name__ == "__main__":
    typer.run(main)
