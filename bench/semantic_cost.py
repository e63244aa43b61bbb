"""What one semantic-gate decision costs: sampler calls, answers, tokens, judge calls and
wall time, per entailment backend, with a fake upstream of fixed latency; and the time to
cluster 10 answers (warm model) against the naive baseline (every ordered pair through
the backend, no lexical short-circuit, no deduplication).

    .venv/bin/python bench/semantic_cost.py

Answers are drawn per decision from fresh two-word phrases (so no embedding is cached
across decisions), with the duplicates a sampled QA answer set has: 10 answers over
~4 meanings, a few phrased two ways.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import typer

from detectors.sampling import Sample
from detectors.semantic import SemanticConfig, SemanticGate
from detectors.semantic.clustering import cluster_all_pairs, cluster_answers
from detectors.semantic.entailment import EquivalenceJudge, make_entailment
from detectors.semantic.judge import JudgeCache

VOCAB = (
    "river stone garden lantern harbor meadow violet copper falcon summit orchard canyon "
    "glacier ember willow marble thunder island beacon prairie cobalt saffron timber "
    "quartz lagoon mosaic nectar pepper raven silver tundra velvet walnut zephyr amber "
    "basalt cedar delta fjord granite hazel ivory jasper kelp lotus maple nickel opal"
).split()


def answer_set(rng: random.Random, n: int = 10) -> list[str]:
    """n answers over 4 fresh meanings, skewed, some phrased as a sentence."""
    meanings = [f"{rng.choice(VOCAB)} {rng.choice(VOCAB)}" for _ in range(4)]
    picks = rng.choices(meanings, weights=[6, 2, 1, 1], k=n)
    return [f"It is {m}." if rng.random() < 0.3 else m for m in picks]


class LatencySampler:
    """A fake upstream: fixed latency per call; answers from a per-decision answer set;
    judge prompts answered by whether the two answers share their last two words."""

    def __init__(self, latency_s: float, seed: int):
        self.latency_s = latency_s
        self.rng = random.Random(seed)
        self.answers: list[str] = []
        self.calls = 0
        self.judge_calls = 0

    def new_decision(self) -> None:
        self.answers = answer_set(self.rng)

    async def __call__(self, messages, *, n: int = 1, **kwargs) -> list[Sample]:
        self.calls += 1
        await asyncio.sleep(self.latency_s)
        content = messages[-1]["content"]
        if content.startswith("We are evaluating"):
            self.judge_calls += 1
            one, two = (line.split(": ", 1)[1] for line in content.splitlines()[2:4])
            same = one.strip(".").split()[-2:] == two.strip(".").split()[-2:]
            return [Sample("entailment" if same else "neutral", completion_tokens=1)]
        picks = [self.rng.choice(self.answers) for _ in range(n)]
        return [Sample(text, completion_tokens=len(text.split())) for text in picks]


def backend_options(name: str, nli_path: str) -> dict:
    return {"nli": {"nli_model_path": nli_path}}.get(name, {})


async def decisions(name: str, count: int, latency_s: float, nli_path: str) -> dict:
    """Run ``count`` gate decisions; per-decision means of what they spent."""
    sampler = LatencySampler(latency_s, seed=1)
    gate = SemanticGate(SemanticConfig(backend=name, **backend_options(name, nli_path)))
    messages = [{"role": "user", "content": "What is the capital of Atlantis?"}]
    sampler.new_decision()
    await gate.run(messages, sampler)  # warm-up: loads the model once
    sampler.calls = sampler.judge_calls = 0
    walls, tokens = [], []
    for _ in range(count):
        sampler.new_decision()
        start = time.perf_counter()
        result = await gate.run(messages, sampler)
        walls.append(time.perf_counter() - start)
        tokens.append(result.cost.completion_tokens)
    return {"calls": sampler.calls / count, "judge_calls": sampler.judge_calls / count,
            "tokens": statistics.mean(tokens), "wall_ms": 1000 * statistics.median(walls)}


async def clustering_times(name: str, reps: int, nli_path: str, latency_s: float) -> dict:
    """p50 ms and backend pairs to cluster 10 answers: ours vs the naive all-pairs."""
    rng = random.Random(2)
    sampler = LatencySampler(latency_s, seed=3)
    options = {"nli": {"model_path": nli_path}, "llm": {"sampler": sampler}}.get(name, {})
    question = "What is the capital of Atlantis?"
    ours_ms, naive_ms, ours_pairs, naive_pairs = [], [], [], []
    for rep in range(reps + 1):
        texts = answer_set(rng)
        for variant in ("ours", "naive"):
            backend = make_entailment(name, **options)  # fresh: no embedding/judge cache
            if name == "llm":
                backend.cache = JudgeCache()
            await backend.prepare(question, ["warm"])  # loads the model (cached per process)
            start = time.perf_counter()
            if variant == "ours":
                judge = EquivalenceJudge(backend, question)
                await cluster_answers(texts, judge)
                pairs = judge.cost.backend_pairs
            else:
                pairs = len(texts) * (len(texts) - 1)
                await cluster_all_pairs(texts, backend, question)
            elapsed = 1000 * (time.perf_counter() - start)
            if rep > 0:  # rep 0 is the warm-up
                (ours_ms if variant == "ours" else naive_ms).append(elapsed)
                (ours_pairs if variant == "ours" else naive_pairs).append(pairs)
    return {"ours_ms": statistics.median(ours_ms), "naive_ms": statistics.median(naive_ms),
            "ours_pairs": statistics.mean(ours_pairs), "naive_pairs": statistics.mean(naive_pairs)}


def build_nli(folder: str) -> str:
    """A tiny random NLI model for call counting (not for timing a real NLI model),
    built by the unit tests' helper (the repository root holds the ``tests`` package)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.detectors.semantic.fakes import build_tiny_nli

    return build_tiny_nli(folder, [0.0, 0.0, 0.0], random_head=True)


def main(decisions_per_backend: int = 20, reps: int = 30, latency_ms: float = 20.0,
         threads: int = 1) -> None:
    torch.set_num_threads(threads)
    latency_s = latency_ms / 1000
    fields = {}
    with tempfile.TemporaryDirectory() as folder:
        nli_path = build_nli(folder)
        for name in ("lexical", "embedding", "nli", "llm"):
            spent = asyncio.run(decisions(name, decisions_per_backend, latency_s, nli_path))
            timing = asyncio.run(clustering_times(name, reps, nli_path, latency_s))
            print(f"{name:9s} calls/decision={spent['calls']:.1f} "
                  f"judge_calls={spent['judge_calls']:.1f} tokens={spent['tokens']:.1f} "
                  f"wall_p50={spent['wall_ms']:.1f}ms | cluster10 p50={timing['ours_ms']:.2f}ms "
                  f"(naive {timing['naive_ms']:.2f}ms) backend pairs={timing['ours_pairs']:.1f} "
                  f"(naive {timing['naive_pairs']:.0f})")
            fields[f"{name}_calls"] = f"{spent['calls']:.1f}"
            fields[f"{name}_judge_calls"] = f"{spent['judge_calls']:.1f}"
            fields[f"{name}_wall_ms"] = f"{spent['wall_ms']:.1f}"
            fields[f"{name}_cluster10_ms"] = f"{timing['ours_ms']:.2f}"
            fields[f"{name}_naive_over_ours_time"] = f"{timing['naive_ms'] / timing['ours_ms']:.2f}"
            fields[f"{name}_naive_over_ours_pairs"] = (
                f"{timing['naive_pairs'] / max(timing['ours_pairs'], 1e-9):.2f}")
    fields["loadavg_1min"] = f"{os.getloadavg()[0]:.2f}"  # 2 shared cores: context for the ms
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    typer.run(main)
