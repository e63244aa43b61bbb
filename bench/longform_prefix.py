"""Long-form answers of the embedded model: what the prefix judges would cut, and where.

    nice -n 10 .venv/bin/python bench/longform_prefix.py [--max-tokens 160]

The prefix thresholds were chosen on short QA answers (bench/halt_prefix.py). This asks
the embedded SmolLM2-135M ten long-form prompts (explanations, descriptions, lists)
through one gateway route with every detector off (temperature 0, top-20 logprobs asked
by the client), then replays each answer's logprobs through both prefix judges exactly as
a progressive stream checks them (every k tokens; HALT re-reading the prefix, the running
−mean-logprob), at their shipped prefix thresholds. Reported: the share of answers each
judge would cut and the token of its first crossing. The answers carry no labels: a cut
here is not known to be right or wrong, which is the point: long-form is not what the
thresholds were validated on.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import typer
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.halt_prefix import check_points, meanlp_risks  # noqa: E402
from detectors.halt.adapter import logprob_matrix  # noqa: E402
from detectors.halt.scorer import HaltScorer  # noqa: E402
from detectors.logprob_stats.detector import prefix_thresholds  # noqa: E402
from evaluation.evaluate import local_gateway  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PROMPTS = (
    "Write four sentences about the history of the Roman Empire.",
    "Explain in five sentences how a bicycle works.",
    "Describe the water cycle in a short paragraph.",
    "Give three tips for learning a new language, with one sentence each.",
    "Write a short paragraph about why the sky is blue.",
    "Explain what a computer program is to a child, in four sentences.",
    "Describe a typical day of a farmer in a short paragraph.",
    "List five fruits and say one thing about each.",
    "Write a short story of four sentences about a lost dog.",
    "Explain in a few sentences why exercise is good for health.",
)
OFF = {"enabled": False}


def first_crossing(risks: list[tuple[int, float]], threshold: float) -> int | None:
    """The prefix length of the first check at or over ``threshold``; None when none."""
    return next((j for j, r in risks if r >= threshold), None)


def main(max_tokens: int = typer.Option(160, help="answer length cap"),
         every: int = typer.Option(8, help="k: tokens between two prefix checks"),
         json_out: Path = typer.Option(REPO / "runs" / "bench_longform_prefix.json")) -> None:
    scorer = HaltScorer.load_default()
    halt_t = scorer.prefix_threshold
    meanlp_t = prefix_thresholds().get("mean_logprob")
    if meanlp_t is None:
        raise SystemExit("no mean_logprob prefix threshold: run bench/halt_prefix.py "
                         "--write-checkpoint first")
    policy = {"version": 1, "routes": [{"name": "d", "default": True, "profile": "off"}],
              "profiles": {"off": {"detectors": {"halt": OFF, "edfl": OFF, "semantic": OFF},
                                   "action": "shadow", "fail_mode": "open"}}}
    rows = []
    with tempfile.TemporaryDirectory(prefix="hallgate-longform-") as tmp, \
            contextlib.ExitStack() as stack:
        path = Path(tmp) / "policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        url = stack.enter_context(local_gateway(path, Path(tmp) / "audit.jsonl"))
        client = stack.enter_context(httpx.Client(timeout=900))
        for prompt in PROMPTS:
            body = {"model": "local/smollm2-135m-instruct", "temperature": 0, "seed": 1,
                    "max_tokens": max_tokens, "logprobs": True, "top_logprobs": 20,
                    "messages": [{"role": "user", "content": prompt}]}
            resp = client.post(f"{url}/v1/chat/completions", json=body)
            resp.raise_for_status()
            choice = resp.json()["choices"][0]
            tokens = choice["logprobs"]["content"]
            mat = logprob_matrix(tokens).values
            points = check_points(len(mat), every)
            halt = [(j, float(r)) for j, r in zip(points, scorer.risks([mat[:j] for j in points])
                                                   if points else [], strict=True)]
            meanlp = [(j, float(r)) for j, r in zip(points, meanlp_risks([mat[:j] for j in points])
                                                     if points else [], strict=True)]
            rows.append({"prompt": prompt, "tokens": len(mat),
                         "text": choice["message"]["content"],
                         "halt_cut_at": first_crossing(halt, halt_t),
                         "meanlp_cut_at": first_crossing(meanlp, meanlp_t),
                         "halt_checks": halt, "meanlp_checks": meanlp})
            print(f"{len(mat)} tokens, HALT cut at {rows[-1]['halt_cut_at']}, "
                  f"mean-logprob cut at {rows[-1]['meanlp_cut_at']}: {prompt}",
                  file=sys.stderr, flush=True)
    summary = {"prompts": len(rows), "median_tokens": statistics.median(r["tokens"] for r in rows),
               "halt_prefix_threshold": halt_t, "meanlp_prefix_threshold": meanlp_t}
    for judge in ("halt", "meanlp"):
        cuts = [r[f"{judge}_cut_at"] for r in rows if r[f"{judge}_cut_at"] is not None]
        summary[f"{judge}_cut_share"] = len(cuts) / len(rows)
        summary[f"{judge}_cut_at_median"] = float(np.median(cuts)) if cuts else float("nan")
        summary[f"{judge}_cut_by_16"] = sum(c <= 16 for c in cuts) / len(rows)
    print("| prompt | tokens | HALT cut at | −mean-logprob cut at |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['prompt']} | {r['tokens']} | {r['halt_cut_at'] or '–'} | "
              f"{r['meanlp_cut_at'] or '–'} |")
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print("RESULT " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in summary.items()))


if __name__ == "__main__":
    typer.run(main)
