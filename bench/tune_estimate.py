"""How close `hallgate tune`'s cost printout comes to what a recording really spent.

    .venv/bin/python bench/tune_estimate.py [--recording recordings/smollm2-135m] \\
        [--policy policies/examples/evaluate.yaml] [--profile evaluate]

The estimate (evaluation/tune_live.py: calls and tokens by detector, from the profile's
settings, the asked max_tokens and whether the upstream honours `n`) for the recording's
finished items, against the baseline of the same run: the recording's own exchanges (one
line per upstream call, with the upstream's usage). Calls of items interrupted and asked
again are in the recording too, so the recorded side is a slight overcount.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def recorded_cost(recording: Path) -> dict[str, float]:
    from proxy.upstream.recording import exchange_files, read_exchanges

    out = {"calls": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0}
    for path in exchange_files(recording):
        for row in read_exchanges(path):
            usage = row["response"].get("usage") or {}
            out["calls"] += 1
            out["prompt_tokens"] += usage.get("prompt_tokens") or 0
            out["completion_tokens"] += usage.get("completion_tokens") or 0
    return out


def main() -> None:
    from evaluation.evaluate import recorded_items
    from evaluation.tune_live import estimate
    from policies import load_policy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recording", type=Path, default=REPO / "recordings" / "smollm2-135m")
    parser.add_argument("--policy", type=Path,
                        default=REPO / "policies" / "examples" / "evaluate.yaml")
    parser.add_argument("--profile", default="evaluate")
    args = parser.parse_args()
    items = recorded_items(args.recording)
    asked = json.loads((args.recording / "asked.json").read_text())
    supports_n = all(m.get("supports_n", True) for m in
                     json.loads((args.recording / "meta.json").read_text())["models"])
    est = estimate(items, load_policy(args.policy).profiles[args.profile],
                   asked["max_tokens"], supports_n)
    got = recorded_cost(args.recording)
    n = len(items)
    print(f"{n} items of {args.recording.name}, max_tokens {asked['max_tokens']}, "
          f"supports_n {supports_n}")
    print(f"{'':24s}{'calls':>10s}{'prompt tokens':>16s}{'completion tokens':>20s}")
    est_prompt = sum(r.prompt_tokens for r in est.rows)
    est_completion = sum(r.completion_tokens for r in est.rows)
    print(f"{'estimate (usual)':24s}{est.calls:10,.0f}{est_prompt:16,.0f}"
          f"{est_completion:20,.0f}")
    print(f"{'estimate (at most)':24s}{est.calls_at_most:10,.0f}"
          f"{sum(r.prompt_tokens_at_most for r in est.rows):16,.0f}"
          f"{sum(r.completion_tokens_at_most for r in est.rows):20,.0f}")
    print(f"{'recorded':24s}{got['calls']:10,.0f}{got['prompt_tokens']:16,.0f}"
          f"{got['completion_tokens']:20,.0f}")
    for row in est.rows:
        print(f"  {row.detector:10s} calls {row.calls / n:6.2f} per item "
              f"(at most {row.calls_at_most / n:.2f})")
    recorded_tokens = got["prompt_tokens"] + got["completion_tokens"]
    print(f"RESULT name=tune_estimate items={n} calls_ratio={est.calls / got['calls']:.3f} "
          f"calls_at_most_ratio={est.calls_at_most / got['calls']:.3f} "
          f"prompt_tokens_ratio={est_prompt / got['prompt_tokens']:.3f} "
          f"tokens_ratio={est.tokens / recorded_tokens:.3f} "
          f"tokens_at_most_ratio={est.tokens_at_most / recorded_tokens:.3f}")


if __name__ == "__main__":
    main()
