"""Semantic entropy and the semantic gate on the embedded model (SmolLM2-135M, llama.cpp).

Two steps, so that the slow part runs once:

    .venv/bin/python bench/semantic_embedded.py sample     # draws -> runs/semantic_samples.jsonl
    .venv/bin/python bench/semantic_embedded.py analyse    # clusters with each backend

``sample`` asks the embedded model, per question, for the greedy answer (temperature 0:
the answer being judged) and the gate's draws (M full-prompt answers at temperature 1.0,
top_p 0.9, and the skeletons' answers), and appends one JSON line per question; it
resumes where it stopped. Items: NQ-Open dev from index 700 and SVAMP from index 300 (the
halt_smollm2_dev items 0-699 / 0-299 were used for calibration), interleaved 3:1.

``analyse`` runs the gate's analysis on the cached draws with each backend and reports
the AUROC of semantic entropy (and 1 - P*) against hallucination of the greedy answer
(labels: ../shared/data/README.md), next to the single-pass baseline -mean token
logprob of the greedy answer, and the gate's abstention and answered-hallucination rates.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import typer

from detectors.labels import contains_gold, number_matches
from detectors.semantic import SampleSet, SemanticConfig, SemanticGate
from detectors.semantic.clustering import mean_token_logprob
from detectors.semantic.gate import sample_from_dict, sample_to_dict
from evaluation.data import DEFAULT_DATA_DIR

DATA = DEFAULT_DATA_DIR
DEFAULT_OUT = Path("runs/semantic_samples.jsonl")
app = typer.Typer(add_completion=False)


def bench_config(**overrides) -> SemanticConfig:
    """The gate as benchmarked: defaults (M = 10, temperature 1.0, top_p 0.9), but answers
    of at most 24 tokens and a minimal prior ensemble (2 skeletons x 1 answer), so that a
    question costs 13 answers of the local model on two shared cores."""
    options = {"max_tokens": 24, "m": 2, "skeleton_samples": 1, **overrides}
    return SemanticConfig(**options)


def load_items(n_nq: int, n_svamp: int) -> list[dict]:
    """NQ-Open dev 700.. and SVAMP 300.., interleaved three NQ to one SVAMP."""
    with open(DATA / "nq_open_dev.jsonl") as handle:
        nq = [json.loads(line) for line in handle][700:700 + n_nq]
    svamp = json.loads((DATA / "svamp_dev.json").read_text())[300:300 + n_svamp]
    nq_items = [{"id": f"nq-{700 + i}", "kind": "text", "gold": row["answer"],
                 "prompt": f"{row['question']}? Answer with a short phrase."}
                for i, row in enumerate(nq)]
    svamp_items = [{"id": f"svamp-{300 + i}", "kind": "number", "gold": [row["Answer"]],
                    "prompt": f"{row['Body']} {row['Question']} Answer with just the number."}
                   for i, row in enumerate(svamp)]
    items = []
    while nq_items or svamp_items:
        items += nq_items[:3] + svamp_items[:1]
        nq_items, svamp_items = nq_items[3:], svamp_items[1:]
    return items


def is_correct(answer: str, item: dict) -> bool:
    """README rules: NQ normalised containment of a gold answer; SVAMP last number equal."""
    if item["kind"] == "number":
        return number_matches(answer, item["gold"][:1])
    return contains_gold(answer, item["gold"])


class SerialSampler:
    """One upstream request in flight at a time, ``n`` drawn as n single requests.

    llama.cpp serves one request at a time; the gate's concurrent calls (1 + m, each
    fanned out n ways by the proxy) would queue 15 requests at once, and on a busy CPU the
    last ones hit the upstream timeout. The draws are the same; only the wall time differs.
    """

    def __init__(self, sampler):
        self.sampler = sampler
        self.lock = asyncio.Lock()

    async def __call__(self, messages, *, n: int = 1, **kwargs):
        samples = []
        for _ in range(n):
            async with self.lock:
                samples += await self.sampler(messages, n=1, **kwargs)
        return samples


async def _sample_all(items: list[dict], out: Path, config: SemanticConfig,
                      deadline: float, threads: int) -> None:
    from proxy.config import EmbeddedSettings
    from proxy.embedded import EmbeddedModel
    from proxy.sampler import open_sampler

    done = set()
    if out.exists():
        done = {json.loads(line)["id"] for line in out.read_text().splitlines() if line}
    todo = [item for item in items if item["id"] not in done]
    gate = SemanticGate(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    embedded = EmbeddedModel(EmbeddedSettings(n_threads=threads))
    await embedded.start()
    try:
        async with open_sampler(api_base=embedded.api_base, model=embedded.model_name) as upstream:
            await _sample_items(todo, len(done), len(items), SerialSampler(upstream), out,
                                gate, deadline)
    finally:
        await embedded.stop()


async def _sample_items(todo, n_done, n_items, sampler, out, gate, deadline) -> None:
    config = gate.config
    for count, item in enumerate(todo, 1):
        if time.time() > deadline:
            print(f"time budget reached after {count - 1} new questions")
            break
        messages = [{"role": "user", "content": item["prompt"]}]
        try:
            (greedy,) = await sampler(messages, n=1, temperature=0.0,
                                      max_tokens=config.max_tokens, top_logprobs=1)
            draws = await gate.sample(messages, sampler)
        except Exception as error:  # an upstream timeout skips the question, not the run
            print(f"skipped {item['id']}: {type(error).__name__}: {error}", flush=True)
            continue
        record = {**item, "greedy": sample_to_dict(greedy), "draws": draws.to_dict()}
        with out.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"[{n_done + count}/{n_items}] {item['id']} {draws.seconds:.1f}s "
              f"greedy={greedy.text[:60]!r}", flush=True)


@app.command()
def sample(n_nq: int = 60, n_svamp: int = 30, out: Path = DEFAULT_OUT,
           minutes: float = typer.Option(45.0, help="stop starting new questions after this"),
           threads: int = typer.Option(1, help="llama.cpp threads (1 is fastest on a busy CPU)")):
    """Draw greedy answers and the gate's samples from the embedded model (resumable)."""
    items = load_items(n_nq, n_svamp)
    asyncio.run(_sample_all(items, out, bench_config(), time.time() + 60 * minutes, threads))


def auroc(scores: list[float], labels: list[int]) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < sum(labels) < len(labels) else None


async def _analyse_backend(records: list[dict], backend_name: str, h_star: float) -> dict:
    gate = SemanticGate(bench_config(backend=backend_name, h_star=h_star))
    backend = gate.backend_for(sampler=None)
    rows = []
    for record in records:
        draws = SampleSet.from_dict(record["draws"])
        greedy = sample_from_dict(record["greedy"])
        result = await gate.analyse(draws, backend, original_answer=greedy.text)
        rows.append({
            "source": record["id"].split("-")[0],
            "hallucinated": int(not is_correct(greedy.text, record)),
            "se_count": result.entropy_count,
            "se_prob": result.entropy_prob,
            "one_minus_pstar": 1.0 - result.p_star,
            "neg_logprob": -(mean_token_logprob(greedy) or 0.0),
            "answered": result.verdict.value == "answer",
            "chosen_hallucinated": int(not is_correct(result.chosen_answer, record)),
            "clusters": len(result.clusters),
            "analysis_ms": 1000 * result.cost.analysis_seconds,
        })
    return summarise(rows)


def summarise(rows: list[dict]) -> dict:
    out: dict = {"n": len(rows)}
    for subset in ("all", "nq", "svamp"):
        part = [r for r in rows if subset == "all" or r["source"] == subset]
        if not part:
            continue
        labels = [r["hallucinated"] for r in part]
        for score in ("se_count", "se_prob", "one_minus_pstar", "neg_logprob"):
            out[f"{subset}_auroc_{score}"] = auroc([r[score] for r in part], labels)
        out[f"{subset}_n"] = len(part)
        out[f"{subset}_halluc_rate"] = float(np.mean(labels))
    answered = [r for r in rows if r["answered"]]
    out["abstention_rate"] = 1.0 - len(answered) / len(rows)
    out["answered_halluc_rate"] = (float(np.mean([r["chosen_hallucinated"] for r in answered]))
                                   if answered else None)
    out["mean_clusters"] = float(np.mean([r["clusters"] for r in rows]))
    out["analysis_ms_p50"] = float(np.median([r["analysis_ms"] for r in rows]))
    return out


def _fmt(value) -> str:
    return "NA" if value is None else f"{value:.3f}"


@app.command()
def analyse(path: Path = DEFAULT_OUT, threads: int = 1):
    """Cluster the cached draws with each backend; print AUROCs and gate rates."""
    import torch

    torch.set_num_threads(threads)
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    summary = {}
    for backend in ("lexical", "embedding"):
        for h_star in (0.05, 0.3):
            stats = asyncio.run(_analyse_backend(records, backend, h_star))
            summary[(backend, h_star)] = stats
            print(f"\n== backend={backend} h*={h_star}")
            for key, value in stats.items():
                print(f"  {key}: {value if isinstance(value, int) else _fmt(value)}")
    lex, emb = summary[("lexical", 0.05)], summary[("embedding", 0.05)]
    fields = {
        "n": emb["n"],
        "auroc_se_embedding": emb["all_auroc_se_count"],
        "auroc_se_lexical": lex["all_auroc_se_count"],
        "auroc_neg_logprob_baseline": emb["all_auroc_neg_logprob"],
        "ratio_embedding_vs_logprob": (
            emb["all_auroc_se_count"] / emb["all_auroc_neg_logprob"]
            if emb["all_auroc_se_count"] is not None and emb["all_auroc_neg_logprob"]
            else None),
        "halluc_rate_no_gate": emb["all_halluc_rate"],
        "abstain_h005": emb["abstention_rate"],
        "answered_halluc_h005": emb["answered_halluc_rate"],
        "abstain_h030": summary[("embedding", 0.3)]["abstention_rate"],
        "answered_halluc_h030": summary[("embedding", 0.3)]["answered_halluc_rate"],
    }
    print("RESULT " + " ".join(f"{k}={_fmt(v) if not isinstance(v, int) else v}"
                               for k, v in fields.items()))


if __name__ == "__main__":
    app()
