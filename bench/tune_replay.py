"""`hallgate tune --replay` end to end, and what binding a bundle costs a request.

    .venv/bin/python bench/tune_replay.py [--recording recordings/smollm2-135m] [--requests 400]

1. Refit: `hallgate tune --replay RECORDING` in a subprocess (read the recording, train
   HALT, score, fit thresholds, the combiner and the operating points, write the bundle
   and its report), against the target of 120 s (a ratio), and beside it the refit that
   reuses a HALT checkpoint (`python -m calibration.build`), in the same run.
2. Lookup A/B: two gateways on one fake upstream, the same profile (mean_logprob, no
   threshold), one whose model has a bundle (its threshold comes from the bundle), one
   with none; requests alternate between them at concurrency 1; p50 latency of each and
   the difference.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TARGET_S = 120.0
POLICY = """
version: 1
routes:
  - {name: default, default: true, profile: mean}
profiles:
  mean:
    detectors: {halt: {enabled: false}, mean_logprob: {enabled: true}}
"""


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def refit(recording: Path, tmp: Path) -> tuple[float, float]:
    python = sys.executable
    tune = timed([python, "-m", "hallgate_cli", "tune", "--replay", str(recording),
                  "--model", "bench", "--out", str(tmp / "tuned" / "bench")])
    build = timed([python, "-m", "calibration.build", "--results",
                   str(recording / "results.jsonl"), "--halt",
                   "detectors/halt/checkpoints/smollm2-135m-instruct.json", "--model", "bench",
                   "--out", str(tmp / "built" / "bench")])
    return tune, build


def lookup_ab(tmp: Path, requests: int) -> tuple[float, float]:
    import openai

    from proxy.app import create_app
    from tests.calibration.bundles import write_bundle
    from tests.conftest import RunningServer, fake_settings
    from tests.fake_upstream import FakeUpstream

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
    times: list[list[float]] = [[], []]
    try:
        for i in range(requests * 2 + 40):
            side = i % 2
            start = time.perf_counter()
            raw = clients[side].chat.completions.with_raw_response.create(
                model="fake", messages=question)
            elapsed = time.perf_counter() - start
            assert (raw.http_response.headers["x-hallgate-calibration"] == "none") == side
            if i >= 40:  # warm-up left out
                times[side].append(elapsed * 1e3)
    finally:
        for s in servers:
            s.stop()
        fake.stop()
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recording", type=Path, default=REPO / "recordings/smollm2-135m")
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with_ms, without_ms = lookup_ab(tmp, args.requests)
        print(f"lookup A/B, p50 of {args.requests} requests each at c=1: with a bundle "
              f"{with_ms:.3f} ms, without {without_ms:.3f} ms")
        tune_s, build_s = refit(args.recording, tmp)
        print(f"tune --replay {tune_s:.1f} s (target {TARGET_S:.0f} s); build with the "
              f"shipped HALT {build_s:.1f} s")
    print(f"RESULT tune_s={tune_s:.1f} tune_over_target={tune_s / TARGET_S:.2f} "
          f"build_s={build_s:.1f} p50_with_bundle_ms={with_ms:.3f} "
          f"p50_without_ms={without_ms:.3f} lookup_added_ms={with_ms - without_ms:.3f}")


if __name__ == "__main__":
    main()
