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

Then the same with ``progressive.cut_on: [short_answer]``: each prompt's kind is read from
the request as the gateway reads it (policies/answer_kind.request_kind), and only a
short answer may be cut. The kinds of the prompts the thresholds were chosen on (the
HALT data, every source) are counted too: cut_on must leave those cut as before.
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
from detectors.halt.causal import CausalStream, CompiledCausal, load_causal  # noqa: E402
from detectors.halt.data import read_records  # noqa: E402
from detectors.halt.scorer import HaltScorer  # noqa: E402
from detectors.logprob_stats.detector import prefix_thresholds  # noqa: E402
from evaluation.data import DEFAULT_DATA_DIR, TRAINING_FILE  # noqa: E402
from evaluation.evaluate import local_gateway  # noqa: E402
from policies.answer_kind import request_kind  # noqa: E402

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


def causal_checks(compiled: CompiledCausal, mat: np.ndarray, every: int,
                  ) -> list[tuple[int, float]]:
    """Causal HALT's stream over ``mat`` fed ``every`` tokens at a time, as the gateway
    feeds it: (prefix length, risk) at each check."""
    stream = CausalStream(compiled)
    return [(j, float(stream.feed(mat[j - every:j]))) for j in check_points(len(mat), every)]


def validation_kinds(data: Path) -> dict[str, float]:
    """The share of each source's prompts in the HALT data that read as short answers."""
    counts: dict[str, list[int]] = {}
    for record in read_records(data):
        kind = request_kind([{"role": "user", "content": record["prompt"]}])
        counts.setdefault(record["source"], []).append(kind == "short_answer")
    return {source: sum(v) / len(v) for source, v in sorted(counts.items())}


def main(max_tokens: int = typer.Option(160, help="answer length cap"),
         every: int = typer.Option(8, help="k: tokens between two prefix checks"),
         data_dir: Path = typer.Option(DEFAULT_DATA_DIR, help="the shared data directory"),
         json_out: Path = typer.Option(REPO / "runs" / "bench_longform_prefix.json")) -> None:
    kinds = validation_kinds(data_dir / TRAINING_FILE)
    print("short_answer share of the prompts the thresholds were chosen on: "
          + ", ".join(f"{s} {v:.3f}" for s, v in kinds.items()), file=sys.stderr)
    causal = load_causal()
    compiled = CompiledCausal(causal.model)
    causal_t = causal.prefix_threshold
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
            causal_seen = causal_checks(compiled, mat, every)
            rows.append({"prompt": prompt, "tokens": len(mat),
                         "kind": request_kind(body["messages"], max_tokens),
                         "text": choice["message"]["content"],
                         "halt_cut_at": first_crossing(halt, halt_t),
                         "meanlp_cut_at": first_crossing(meanlp, meanlp_t),
                         "causal_cut_at": first_crossing(causal_seen, causal_t),
                         "halt_checks": halt, "meanlp_checks": meanlp,
                         "causal_checks": causal_seen})
            print(f"{len(mat)} tokens, HALT cut at {rows[-1]['halt_cut_at']}, "
                  f"mean-logprob cut at {rows[-1]['meanlp_cut_at']}: {prompt}",
                  file=sys.stderr, flush=True)
    summary = {"prompts": len(rows), "median_tokens": statistics.median(r["tokens"] for r in rows),
               "halt_prefix_threshold": halt_t, "meanlp_prefix_threshold": meanlp_t,
               "causal_prefix_threshold": causal_t,
               "short_answer_prompts": sum(r["kind"] == "short_answer" for r in rows),
               **{f"validation_short_share_{s}": v for s, v in kinds.items()}}
    for judge in ("halt", "meanlp", "causal"):
        cuts = [r[f"{judge}_cut_at"] for r in rows if r[f"{judge}_cut_at"] is not None]
        summary[f"{judge}_cut_share"] = len(cuts) / len(rows)
        summary[f"{judge}_cut_at_median"] = float(np.median(cuts)) if cuts else float("nan")
        summary[f"{judge}_cut_by_16"] = sum(c <= 16 for c in cuts) / len(rows)
        summary[f"{judge}_cut_share_cut_on_short"] = sum(
            r[f"{judge}_cut_at"] is not None and r["kind"] == "short_answer"
            for r in rows) / len(rows)
    print("| prompt | kind | tokens | HALT cut at | −mean-logprob cut at | causal HALT cut at |"
          "\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['prompt']} | {r['kind']} | {r['tokens']} | {r['halt_cut_at'] or '–'} | "
              f"{r['meanlp_cut_at'] or '–'} | {r['causal_cut_at'] or '–'} |")
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print("RESULT " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in summary.items()))


if __name__ == "__main__":
    typer.run(main)
