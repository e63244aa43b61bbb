"""Progressive vs buffered streaming on the embedded model: time to first token, cuts,
false cuts, upstream tokens saved.

    .venv/bin/python bench/streaming_gate.py [--items 40] [--max-tokens 64]

One gateway on the embedded SmolLM2-135M with two routes that differ only in how they
stream: `buffer` (HALT on the whole answer, action annotate, so the answer and its
verdict come back) and `progressive` (HALT on the growing prefix, action abstain, so a
risky prefix cuts the stream). Each question is asked once per route, one request at a
time, temperature 0 (llama.cpp is then deterministic: both routes see the same tokens
until a cut). The questions are the first items of the recorded corpus
(recordings/smollm2-135m/items.jsonl; without it, evaluation.data's items that HALT
never trained or validated on, equal numbers per source); an answer's label comes from
the buffered run's full text (evaluation/data.py's rules).

Reported:
- time to the first content chunk, p50, progressive vs buffer, on answers longer than
  2W tokens (where progressive can release early) and on all;
- on hallucinated answers: the share cut with at most W tokens released;
- on correct answers: the false-cut rate, next to the whole-answer HALT's false-abstain
  rate at its own threshold on the same answers;
- upstream tokens saved: tokens the buffered run generated beyond where progressive cut.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import typer
import yaml

from evaluation.data import DEFAULT_DATA_DIR, is_correct, load_items
from evaluation.evaluate import local_gateway

REPO = Path(__file__).resolve().parent.parent
ITEMS = REPO / "recordings" / "smollm2-135m" / "items.jsonl"


def policy(holdback: int, every: int) -> dict:
    halt_only = {"halt": {"enabled": True}, "edfl": {"enabled": False},
                 "semantic": {"enabled": False}}
    return {"version": 1, "routes": [
        {"name": "progressive", "match": {"header": "progressive"}, "profile": "progressive"},
        {"name": "buffer", "match": {"header": "buffer"}, "profile": "buffered"},
        {"name": "default", "default": True, "profile": "buffered"}],  # an x-hallgate-route
    # value must name a route with that header (an unknown one is a 400)
        "profiles": {
            "buffered": {"detectors": halt_only, "streaming": "buffer", "action": "annotate",
                         "fail_mode": "open"},
            "progressive": {"detectors": halt_only, "streaming": "progressive",
                            "progressive": {"holdback_tokens": holdback,
                                            "rescore_every": every},
                            "action": "abstain", "fail_mode": "open"}}}


def stream_once(client: httpx.Client, url: str, route: str, prompt: str,
                max_tokens: int) -> dict:
    """One streamed request: time to the first content chunk, the text, the chunks that
    carried content, the refusal and the verdict chunk's `hallgate` object."""
    body = {"model": "local/smollm2-135m-instruct", "stream": True, "temperature": 0,
            "seed": 1, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}]}
    start = time.perf_counter()
    first, text, refusal, chunks, meta = None, [], [], 0, {}
    with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                       headers={"x-hallgate-route": route}) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            data = json.loads(line[5:])
            meta = data.get("hallgate") or meta
            for choice in data.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    first = first if first is not None else time.perf_counter() - start
                    text.append(delta["content"])
                    chunks += 1
                if delta.get("refusal"):
                    refusal.append(delta["refusal"])
    return {"ttft_s": first, "text": "".join(text), "content_chunks": chunks,
            "refusal": "".join(refusal), "hallgate": meta,
            "wall_s": time.perf_counter() - start}


def summarise(rows: list[dict], holdback: int) -> dict:
    long = [r for r in rows if r["buffer"]["content_chunks"] > 2 * holdback]
    hallucinated = [r for r in rows if not r["correct"]]
    correct = [r for r in rows if r["correct"]]

    def p50(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else float("nan")

    def cut(r) -> dict:
        return (r["progressive"]["hallgate"] or {}).get("progressive") or {}

    early = [r for r in hallucinated if cut(r).get("cut")
             and (cut(r).get("released_tokens") or 0) <= holdback]
    false_cuts = [r for r in correct if cut(r).get("cut")]
    halt_false = [r for r in correct if ((r["buffer"]["hallgate"].get("detectors") or {})
                                         .get("halt") or {}).get("verdict") == "abstain"]
    generated = sum(r["buffer"]["content_chunks"] for r in rows)
    saved = sum(max(0, r["buffer"]["content_chunks"] - (cut(r).get("tokens_read") or 0))
                for r in rows if cut(r).get("cut"))
    ttft_prog_long = p50([r["progressive"]["ttft_s"] for r in long])
    ttft_buf_long = p50([r["buffer"]["ttft_s"] for r in long])
    return {
        "items": len(rows), "hallucinated": len(hallucinated), "correct": len(correct),
        "long_answers": len(long),
        "ttft_p50_buffer_long_s": ttft_buf_long, "ttft_p50_progressive_long_s": ttft_prog_long,
        "ttft_ratio_long": ttft_prog_long / ttft_buf_long if ttft_buf_long else float("nan"),
        "ttft_p50_buffer_s": p50([r["buffer"]["ttft_s"] for r in rows]),
        "ttft_p50_progressive_s": p50([r["progressive"]["ttft_s"] for r in rows]),
        "cut_within_w_hallucinated": len(early) / len(hallucinated) if hallucinated else 0.0,
        "cut_any_hallucinated": (sum(1 for r in hallucinated if cut(r).get("cut"))
                                 / len(hallucinated)) if hallucinated else 0.0,
        "false_cut_rate": len(false_cuts) / len(correct) if correct else float("nan"),
        "halt_false_abstain_rate": len(halt_false) / len(correct) if correct else float("nan"),
        "upstream_tokens_saved": saved, "upstream_tokens_buffer": generated,
        "tokens_saved_share": saved / generated if generated else 0.0,
    }


def main(items: int = typer.Option(40, help="Questions (the corpus' first ones)."),
         max_tokens: int = typer.Option(64, help="Answer length cap."),
         holdback: int = typer.Option(8, help="W: progressive.holdback_tokens."),
         every: int = typer.Option(8, help="k: progressive.rescore_every."),
         json_out: Path = typer.Option(REPO / "runs" / "bench_streaming_gate.json")) -> None:
    if ITEMS.exists():
        questions = load_items(str(ITEMS), ITEMS.parent)[:items]
    else:  # a checkout without the recording: evaluation.data's held-out items
        questions = load_items("all", DEFAULT_DATA_DIR, per_source=max(1, items // 4))[:items]
    rows = []
    with tempfile.TemporaryDirectory(prefix="hallgate-streaming-") as tmp, \
            contextlib.ExitStack() as stack:
        policy_path = Path(tmp) / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy(holdback, every), sort_keys=False))
        url = stack.enter_context(local_gateway(policy_path, Path(tmp) / "audit.jsonl"))
        client = stack.enter_context(httpx.Client(timeout=600))
        stream_once(client, url, "buffer", "Say hello.", 8)  # warm-up
        for i, item in enumerate(questions):
            row = {"id": item.id, "source": item.source}
            row["buffer"] = stream_once(client, url, "buffer", item.prompt, max_tokens)
            row["progressive"] = stream_once(client, url, "progressive", item.prompt,
                                             max_tokens)
            row["correct"] = is_correct(item, row["buffer"]["text"])
            rows.append(row)
            print(f"{i + 1}/{len(questions)} {item.id} correct={row['correct']} "
                  f"cut={(row['progressive']['hallgate'].get('progressive') or {}).get('cut')}",
                  file=sys.stderr, flush=True)
    summary = summarise(rows, holdback)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=1))
    print("RESULT " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in summary.items()))


if __name__ == "__main__":
    typer.run(main)
