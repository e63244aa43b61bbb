"""What binding a calibration bundle to a model costs a request: a same-run A/B.

    .venv/bin/python bench/bundle_lookup_ab.py [--rounds 7] [--requests 150]

Two gateways on one fake upstream, the same policy (mean_logprob on, no threshold in the
profile, `uncalibrated: annotate`): A's model has a bundle (its threshold comes from the
bundle, its scores feed the drift monitor), B's has none (judged uncalibrated, annotated).
Each round sends ``--requests`` requests to each, alternating one by one at concurrency 1
(which side goes first alternates by round), after a warm-up; the p50 latency of each side
per round, and the differences A − B of requests adjacent in time (paired, so the
machine's load, which moves both alike, cancels). The spread of the per-round median
differences says what "measurable" means on this machine: the lookup adds nothing
measurable when the rounds' medians straddle zero.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
POLICY = """
version: 1
routes:
  - {name: default, default: true, profile: mean}
profiles:
  mean:
    detectors: {halt: {enabled: false}, mean_logprob: {enabled: true}}
    uncalibrated: annotate
"""
WARMUP = 40  # requests per side before the first round


def main() -> None:
    import openai

    from proxy.app import create_app
    from tests.calibration.bundles import write_bundle
    from tests.conftest import RunningServer, fake_settings
    from tests.fake_upstream import FakeUpstream

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=150, help="per side per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        policy = tmp / "policy.yaml"
        policy.write_text(POLICY)
        write_bundle(tmp / "with" / "fake", thresholds={"mean_logprob": 0.9})
        (tmp / "without").mkdir()
        fake = FakeUpstream().serve_in_thread()
        servers = [RunningServer(create_app(fake_settings(
            fake, policy_file=str(policy), calibration_dir=str(tmp / d)))).start()
            for d in ("with", "without")]
        clients = [openai.OpenAI(base_url=f"{s.url}/v1", api_key="x", max_retries=0)
                   for s in servers]
        question = [{"role": "user", "content": "What is the capital of France?"}]

        def once(side: int) -> float:
            start = time.perf_counter()
            raw = clients[side].chat.completions.with_raw_response.create(
                model="fake", messages=question)
            elapsed = (time.perf_counter() - start) * 1e3
            bundled = raw.http_response.headers["x-hallgate-calibration"] != "none"
            assert bundled == (side == 0), "side A must be bundled, side B not"
            return elapsed

        rounds: list[tuple[float, float, float]] = []  # p50 A, p50 B, median of A − B
        pairs: list[float] = []
        try:
            for i in range(WARMUP * 2):
                once(i % 2)
            for r in range(args.rounds):
                times: list[list[float]] = [[], []]
                for i in range(args.requests * 2):
                    side = (i + r) % 2
                    times[side].append(once(side))
                paired = [a - b for a, b in zip(*times, strict=True)]  # adjacent in time
                pairs += paired
                rounds.append((statistics.median(times[0]), statistics.median(times[1]),
                               statistics.median(paired)))
                print(f"round {r + 1}: p50 with a bundle {rounds[-1][0]:.3f} ms, "
                      f"without {rounds[-1][1]:.3f} ms, median paired difference "
                      f"{rounds[-1][2]:+.3f} ms")
        finally:
            for s in servers:
                s.stop()
            fake.stop()
    per_round = sorted(d for _, _, d in rounds)
    with_ms = statistics.median(a for a, _, _ in rounds)
    without_ms = statistics.median(b for _, b, _ in rounds)
    added = statistics.median(pairs)
    print(f"{args.rounds} rounds of {args.requests} requests per side at c=1: median of the "
          f"per-round p50s with a bundle {with_ms:.3f} ms, without {without_ms:.3f} ms; "
          f"median paired difference {added:+.3f} ms over {len(pairs)} pairs (per-round "
          f"medians {per_round[0]:+.3f} .. {per_round[-1]:+.3f})")
    print(f"RESULT p50_with_bundle_ms={with_ms:.3f} p50_without_ms={without_ms:.3f} "
          f"ratio={with_ms / without_ms:.3f} added_ms={added:.3f} "
          f"added_round_min_ms={per_round[0]:.3f} added_round_max_ms={per_round[-1]:.3f} "
          f"rounds={args.rounds}")


if __name__ == "__main__":
    main()
