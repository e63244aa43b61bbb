"""Progressive vs buffer streaming through the gateway on the embedded model (SmolLM2-135M).

Each question is asked twice, back to back, on the same gateway (the default policy, HALT
only), greedy (temperature 0, 48 tokens), streamed with the openai SDK:

- ``buffer`` with ``action: annotate`` (the default route's): held until judged, then the
  whole answer, which labels the item (correct or hallucinated, evaluation.data rules);
- ``progressive`` with ``x-hallgate-action: abstain``: released W tokens behind the model,
  cut when HALT's prefix risk crosses the checkpoint's prefix threshold.

Greedy decoding makes both runs generate the same answer; the bench counts the items
where the released text is not a prefix of the buffered answer (``mismatch``).

Reported: time to first visible token (content or refusal) p50 of each mode on the same
items, on all and on answers longer than 2W tokens, and the median per-item ratio
progressive / buffer there (the two runs of an item are back to back, so the ratio is
less exposed to a shared machine's load than either p50); on hallucinated answers the fraction
cut with at most W tokens released, and the fraction cut at all; on correct answers the
fraction cut by a prefix check (the false-cut rate) and the fraction refused at all, next
to the full-answer HALT's false-abstain rate on the same answers (the buffer run's
verdict); and the share of upstream tokens not generated because of cuts. Items come from
evaluation.data (never HALT's training or validation answers).

    .venv/bin/python bench/streaming_gate.py [--per-source 6]
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from pathlib import Path

import openai
import typer
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.data import DEFAULT_DATA_DIR, is_correct, load_items  # noqa: E402
from proxy.app import create_app  # noqa: E402
from proxy.config import EMBEDDED_MODEL_NAME, Settings  # noqa: E402


def start_gateway() -> tuple[uvicorn.Server, str]:
    """The gateway on the embedded model, in a thread, on a free loopback port."""
    server = uvicorn.Server(uvicorn.Config(create_app(Settings()), host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 300
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def ask(client: openai.OpenAI, prompt: str, headers: dict[str, str]) -> dict:
    """One streamed answer: time to the first visible token, texts and the verdict."""
    start = time.perf_counter()
    first = None
    content, refusal, verdict, tokens = [], [], {}, 0
    for chunk in client.chat.completions.create(
            model=EMBEDDED_MODEL_NAME, messages=[{"role": "user", "content": prompt}],
            max_tokens=48, temperature=0, stream=True, extra_headers=headers,
            logprobs=True, top_logprobs=0):  # logprobs: one entry per released token
        verdict = (chunk.model_extra or {}).get("hallgate", verdict)
        for choice in chunk.choices:
            tokens += len(choice.logprobs.content or ()) if choice.logprobs else 0
            delta = choice.delta
            if (delta.content or delta.refusal) and first is None:
                first = time.perf_counter() - start
            content.append(delta.content or "")
            refusal.append(delta.refusal or "")
    return {"ttft": first, "seconds": time.perf_counter() - start, "content": "".join(content),
            "refusal": "".join(refusal), "verdict": verdict,
            "tokens": tokens}


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def report(row: dict) -> dict:
    """The progressive run's ``hallgate.progressive`` object."""
    return row["progressive"]["verdict"].get("progressive") or {}


def summarise(rows: list[dict]) -> dict:
    """The RESULT fields (see the module docstring)."""
    w = report(rows[0])["holdback_tokens"] if rows else 8
    long = [r for r in rows if r["buffer"]["tokens"] > 2 * w]
    halluc = [r for r in rows if not r["correct"]]
    correct = [r for r in rows if r["correct"]]
    saved = sum(max(0, r["buffer"]["tokens"] - report(r)["tokens_read"]) for r in rows)
    return {
        "items": len(rows), "correct": len(correct), "holdback": w,
        "ttft_p50_buffer_s": p50([r["buffer"]["ttft"] for r in rows]),
        "ttft_p50_progressive_s": p50([r["progressive"]["ttft"] for r in rows]),
        "long_items": len(long),
        "ttft_p50_buffer_long_s": p50([r["buffer"]["ttft"] for r in long]),
        "ttft_p50_progressive_long_s": p50([r["progressive"]["ttft"] for r in long]),
        "ttft_ratio_p50_long": p50([r["progressive"]["ttft"] / r["buffer"]["ttft"]
                                    for r in long]),  # per item, same prompt: robust to load
        "halluc_cut_within_w": rate([r["cut"] and report(r)["released_tokens"] <= w
                                     for r in halluc]),
        "halluc_cut": rate([r["cut"] for r in halluc]),
        "correct_prefix_cut": rate([r["prefix_cut"] for r in correct]),
        "correct_refused": rate([r["cut"] for r in correct]),
        "correct_full_halt_abstain": rate([r["buffer"]["verdict"].get("decision") == "abstain"
                                           for r in correct]),
        "tokens_saved_frac": saved / max(1, sum(r["buffer"]["tokens"] for r in rows)),
        "mismatch": sum(not r["buffer"]["content"].startswith(r["progressive"]["content"])
                        for r in rows),
    }


def main(per_source: int = typer.Option(6, help="items per source (4 sources)"),
         data_dir: Path = typer.Option(DEFAULT_DATA_DIR, help="the shared data directory"),
         out: Path | None = typer.Option(None, help="write every item's runs here (JSON)"),
         ) -> None:
    items = load_items("all", data_dir, per_source=per_source, seed=0)
    server, url = start_gateway()
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                           timeout=600)
    rows = []
    try:
        for item in items:
            buffer = ask(client, item.prompt, {"x-hallgate-streaming": "buffer"})
            progressive = ask(client, item.prompt, {"x-hallgate-streaming": "progressive",
                                                    "x-hallgate-action": "abstain"})
            row = {"id": item.id, "correct": is_correct(item, buffer["content"]),
                   "buffer": buffer, "progressive": progressive}
            cut = bool(report(row).get("cut"))
            row.update(cut=cut, prefix_cut=cut and report(row)["reason"].startswith("halt"))
            rows.append(row)
            print(f"{item.id}: correct={row['correct']} cut={cut} "
                  f"released={report(row).get('released_tokens')}/"
                  f"{report(row).get('tokens_read')} "
                  f"ttft buffer={buffer['ttft']:.2f}s progressive={progressive['ttft']:.2f}s",
                  flush=True)
    finally:
        server.should_exit = True
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1) + "\n")
    fields = summarise(rows)
    print("RESULT " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in fields.items()))


if __name__ == "__main__":
    typer.run(main)
