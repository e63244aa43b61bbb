"""`hallgate tune --replay` end to end on a recorded corpus, against the 2-minute target.

    .venv/bin/python bench/tune_replay.py [--recording recordings/smollm2-135m] [--build]

`hallgate tune --replay RECORDING` in a subprocess (read the recording, train HALT,
score, fit thresholds, the combiner, the operating points and the detector-set choice,
write the bundle, its report, figures and snippet), timed end to end and by stage (the
command's own `stages:` line). Ratios in the same run: against the target of 120 s, and
against the run's own first stage (reading the recording's exchanges and labels), the
floor any refit pays. The child's CPU-seconds (user + system) are printed beside the
wall clock: on an idle core the wall clock approaches them. With ``--build``, the refit
that reuses a HALT checkpoint (`python -m calibration.build`) is timed beside it. The
machine's load average before and after is printed: on a shared machine it moves the wall
clock more than any change here.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 120.0


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child: user + system, its stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def stages(output: str) -> dict[str, float]:
    """``stages: reading 3.1 s, HALT training 40.2 s, ...`` -> {stage: seconds}."""
    line = next((x for x in output.splitlines() if x.startswith("stages:")), "")
    return {name.strip(): float(s) for name, s in
            re.findall(r"([A-Za-z ]+?) ([0-9.]+) s", line.removeprefix("stages:"))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recording", type=Path, default=REPO / "recordings/smollm2-135m")
    parser.add_argument("--build", action="store_true",
                        help="also time calibration.build with the shipped HALT")
    args = parser.parse_args()
    python = sys.executable
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        tune_s, tune_cpu_s, output = timed([python, "-m", "hallgate_cli", "tune", "--replay",
                                str(args.recording), "--model", "bench", "--out",
                                str(tmp / "tuned" / "bench")])
        build_s = None
        if args.build:
            build_s, _, _ = timed([python, "-m", "calibration.build", "--results",
                                str(args.recording / "results.jsonl"), "--halt",
                                "detectors/halt/checkpoints/smollm2-135m-instruct.json",
                                "--model", "bench", "--out", str(tmp / "built" / "bench")])
    load_after = os.getloadavg()[0]
    laps = stages(output)
    reading = laps.get("reading", float("nan"))
    print(f"tune --replay {args.recording.name}: {tune_s:.1f} s end to end (target "
          f"{TARGET_S:.0f} s), {tune_cpu_s:.1f} CPU-seconds; stages: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in laps.items()))
    if build_s is not None:
        print(f"calibration.build with the shipped HALT: {build_s:.1f} s")
    print(f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after, "
          f"on {os.cpu_count()} CPUs")
    print(f"RESULT tune_s={tune_s:.1f} tune_over_target={tune_s / TARGET_S:.2f} "
          f"tune_cpu_s={tune_cpu_s:.1f} cpu_over_target={tune_cpu_s / TARGET_S:.2f} "
          f"reading_s={reading:.1f} tune_over_reading={tune_s / reading:.1f} "
          f"halt_training_s={laps.get('HALT training', float('nan')):.1f} "
          + (f"build_s={build_s:.1f} " if build_s is not None else "")
          + f"load_before={load_before:.2f} load_after={load_after:.2f}")


if __name__ == "__main__":
    main()
