"""The EDFL gate on the embedded model (SmolLM2-135M via llama.cpp): abstention rate, and
hallucination rate among answered items against the ungated rate, in the same run.

Each item: the gate's decision and the answer (max_tokens 48, temperature 0) run together,
as in the gateway; the answer is labelled by ../shared/data/README.md (NQ-Open
normalisation + containment of a gold answer; SVAMP: last number equals the answer).

    # choose the decision prompt style on the validation slice (label mass per style)
    .venv/bin/python bench/edfl_embedded.py probe
    # the gate on the test slice (40 NQ-Open + 20 SVAMP by default)
    .venv/bin/python bench/edfl_embedded.py run --style fewshot

Slices: validation = NQ-Open dev items 1000+, SVAMP items 300+; test = NQ-Open dev items
2000+, SVAMP items 400+. Nothing is tuned on the test slice.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from pathlib import Path

import typer

from detectors.edfl.config import PROMPT_STYLES, EdflConfig
from detectors.edfl.decision import decision_messages, estimate_by_logprobs
from detectors.edfl.gate import EdflGate
from detectors.halt.metrics import auroc as halt_auroc
from detectors.labels import contains_gold, number_matches

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SLICES = {"validation": (1000, 300), "test": (2000, 400)}  # (NQ-Open start, SVAMP start)
app = typer.Typer(add_completion=False)


# --------------------------------------------------------------------------- data + labels


def load_items(split: str, n_nq: int, n_svamp: int) -> list[dict]:
    """Prompts in the format of halt_smollm2_dev (the embedded model's training answers)."""
    nq_start, sv_start = SLICES[split]
    lines = open(DATA / "nq_open_dev.jsonl").read().splitlines()
    nq = [json.loads(line) for line in lines[nq_start : nq_start + n_nq]]
    svamp = json.load(open(DATA / "svamp_dev.json"))[sv_start : sv_start + n_svamp]
    items = [
        {"source": "nq", "prompt": f"{d['question']}? Answer with a short phrase.",
         "gold": d["answer"]}
        for d in nq
    ] + [
        {"source": "svamp", "prompt": f"{d['Body']} {d['Question']} Answer with just the number.",
         "gold": [d["Answer"]]}
        for d in svamp
    ]  # fmt: skip
    return items


def is_correct(item: dict, answer: str) -> bool:
    if item["source"] == "nq":
        return contains_gold(answer, item["gold"])
    return number_matches(answer, item["gold"][:1])


def auroc(scores: list[float], positives: list[bool]) -> float | None:
    """HALT's AUROC (ties count one half); None when only one class is present."""
    value = halt_auroc(scores, [int(y) for y in positives])
    return None if math.isnan(value) else value


# --------------------------------------------------------------------------- commands


@app.command()
def probe(
    n_nq: int = typer.Option(12, help="NQ-Open validation items"),
    n_svamp: int = typer.Option(6, help="SVAMP validation items"),
) -> None:
    """Label mass of the full-prompt decision call per prompt style, on the validation slice."""
    from proxy.sampler import open_sampler

    items = load_items("validation", n_nq, n_svamp)

    async def go() -> dict:
        masses: dict[str, list[float]] = {s: [] for s in PROMPT_STYLES}
        async with open_sampler() as sampler:
            for style in PROMPT_STYLES:
                config = EdflConfig(prompt_style=style)
                for item in items:
                    prompt = decision_messages([{"role": "user", "content": item["prompt"]}], style)
                    estimate, _ = await estimate_by_logprobs(prompt, sampler, config)
                    masses[style].append(estimate.label_mass)
        return masses

    masses = asyncio.run(go())
    for style, values in masses.items():
        print(f"{style:11} label mass median {statistics.median(values):.3f} "
              f"mean {statistics.mean(values):.3f} min {min(values):.3f}")  # fmt: skip
    best = max(masses, key=lambda s: statistics.median(masses[s]))
    medians = " ".join(f"mass_{s}={statistics.median(v):.3f}" for s, v in masses.items())
    print(f"RESULT split=validation items={len(items)} {medians} best_style={best}")


async def _run_items(items: list[dict], config: EdflConfig, show, out: Path | None) -> list[dict]:
    from proxy.sampler import open_sampler

    rows = []
    gate = EdflGate(config)
    async with open_sampler() as sampler:
        for item in items:
            messages = [{"role": "user", "content": item["prompt"]}]
            calls_before = sampler.stats.calls
            started = time.perf_counter()
            result, answer = await asyncio.gather(
                gate.run(messages, sampler),
                sampler(messages, n=1, temperature=0.0, max_tokens=48, top_logprobs=0),
            )
            text = answer[0].text
            rows.append({
                **item, "answer": text, "correct": is_correct(item, text),
                "wall_s": time.perf_counter() - started,
                "upstream_calls": sampler.stats.calls - calls_before - 1, **result.to_dict(),
            })  # fmt: skip
            show(rows[-1])
            if out:  # as we go, so that an interrupted run keeps its rows
                with out.open("a") as sink:
                    sink.write(json.dumps(rows[-1]) + "\n")
    return rows


def _summary(rows: list[dict]) -> dict:
    answered = [r for r in rows if r["verdict"] == "answer"]
    halluc = [not r["correct"] for r in rows]
    masses = [m for r in rows for m in r["label_masses"] if m is not None]
    methods = [m for r in rows for m in r["methods"]]
    return {
        "items": len(rows),
        "abstain_rate": 1 - len(answered) / len(rows),
        "halluc_rate_ungated": sum(halluc) / len(rows),
        "halluc_rate_answered": (
            sum(not r["correct"] for r in answered) / len(answered) if answered else None
        ),
        "answered": len(answered),
        "label_mass_median": statistics.median(masses) if masses else None,
        "label_mass_full_median": statistics.median(
            [r["label_masses"][0] for r in rows if r["label_masses"][0] is not None] or [0.0]
        ),
        "sampling_share": methods.count("sampling") / len(methods),
        "auroc_risk": auroc([r["risk"] for r in rows], halluc),
        "auroc_1_minus_P": auroc([1 - r["P"] for r in rows], halluc),
        "calls_per_item": statistics.mean(r["upstream_calls"] for r in rows),
        "gate_wall_s": statistics.mean(r["wall_s"] for r in rows),
    }


def _fmt(value) -> str:
    if value is None:
        return "NA"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@app.command()
def run(
    style: str = typer.Option("fewshot", help="decision prompt style (choose with `probe`)"),
    n_nq: int = typer.Option(40, help="NQ-Open test items"),
    n_svamp: int = typer.Option(20, help="SVAMP test items"),
    h_star: float = typer.Option(0.05, help="target hallucination rate (strict-factual)"),
    split: str = typer.Option("test", help="validation | test"),
    out: Path | None = typer.Option(None, help="write one JSON line per item here"),
) -> None:
    """The gate and the answer for every item; rates, label mass, AUROC of the risk."""
    items = load_items(split, n_nq, n_svamp)
    config = EdflConfig(h_star=h_star, prompt_style=style)

    def show(row: dict) -> None:
        print(f"{row['source']:5} {row['verdict']:7} P={row['P']:.2f} "
              f"q_lo={row['q_lo']:.2f} dbar={row['delta_bar']:+.2f} b2t={row['b2t']:.2f} "
              f"correct={row['correct']!s:5} {row['answer'][:50]!r}", flush=True)  # fmt: skip

    if out:
        out.write_text("")
    rows = asyncio.run(_run_items(items, config, show, out))
    summary = _summary(rows)
    for key, value in summary.items():
        print(f"{key:24} {_fmt(value)}")
    print("RESULT " + " ".join(f"{k}={_fmt(v)}" for k, v in summary.items()) + f" style={style}")


@app.command()
def sweep(
    rows_paths: list[Path] = typer.Argument(..., help="JSON lines written by `run --out`"),
    h_stars: str = typer.Option("0.05,0.1,0.2,0.3,0.4", help="comma-separated h* values"),
) -> None:
    """Summary of stored rows, and the rule re-applied to their P and S_k at other h*."""
    from detectors.edfl import budget

    by_prompt: dict[str, dict] = {}  # several (partial) runs merge; the first row of a prompt wins
    for path in rows_paths:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            by_prompt.setdefault(row["prompt"], row)
    rows = list(by_prompt.values())
    summary = _summary(rows)
    print(" ".join(f"{k}={_fmt(v)}" for k, v in summary.items()))
    config = EdflConfig()
    parts = []
    for h_star in (float(h) for h in h_stars.split(",")):
        answered = []
        for r in rows:
            q_lo = budget.q_lo(r["S"], config.q_floor)
            b2t = budget.bits_to_trust(q_lo, h_star)
            isr = budget.information_sufficiency_ratio(r["delta_bar"], b2t)
            if budget.should_answer(
                r["P"],
                r["delta_bar"],
                b2t,
                isr,
                isr_threshold=config.isr_threshold,
                margin=config.margin,
            ):
                answered.append(r)  # fmt: skip
        wrong = sum(not r["correct"] for r in answered)
        rate = wrong / len(answered) if answered else None
        print(f"h*={h_star:.2f} answered {len(answered):3}/{len(rows)} "
              f"hallucination among answered {_fmt(rate)}")  # fmt: skip
        parts.append(f"answered_h{h_star:g}={len(answered)} halluc_h{h_star:g}={_fmt(rate)}")
    print(f"RESULT items={len(rows)} " + " ".join(parts))


if __name__ == "__main__":
    app()
