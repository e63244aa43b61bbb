"""Cost of one EDFL gate decision: upstream calls, tokens and wall time, against the
reference toolkit's (1 + m)·n calls, on an in-process fake upstream.

The fake serves every call in parallel after ``--latency`` seconds (asyncio.sleep), like a
hosted API, counts calls and tokens, and answers the decision question with label logprobs
(or, with ``--no-logprobs``, with sampled text and one call per requested sample, like an
upstream that ignores ``n``). Prompts are real questions from ../shared/data (NQ-Open,
SVAMP, HaluEval with evidence), all different, so no decision is served from the cache.

    .venv/bin/python bench/edfl_cost.py            # logprob upstream
    .venv/bin/python bench/edfl_cost.py --no-logprobs
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import statistics
import time
from pathlib import Path

import typer

from detectors.edfl.config import EdflConfig
from detectors.edfl.gate import EdflGate
from detectors.sampling import Sample, TokenLogprob

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class SleepingUpstream:
    """A fake upstream: ``latency`` s per call, all calls in parallel, calls/tokens counted."""

    def __init__(self, latency: float, logprobs: bool):
        self.latency, self.logprobs = latency, logprobs
        self.calls = self.prompt_tokens = self.completion_tokens = 0

    def _p_answer(self, text: str) -> float:
        digest = hashlib.sha256(text.encode()).digest()
        return 0.02 + 0.96 * digest[0] / 255  # a deterministic, varied P(answer)

    async def _one_call(self, messages, max_tokens: int, want_logprobs: bool, i: int) -> Sample:
        await asyncio.sleep(self.latency)
        text = json.dumps(messages)
        p = self._p_answer(text)
        completion = min(max_tokens or 16, 2)
        self.calls += 1
        self.prompt_tokens += len(text) // 4  # ~4 characters per token
        self.completion_tokens += completion
        if want_logprobs:
            top = ((" answer", math.log(p)), (" refuse", math.log(1 - p)))
            top = tuple(sorted(top, key=lambda e: -e[1]))
            return Sample(top[0][0], (TokenLogprob(top[0][0], top[0][1], top),), "length", 0, 1)
        label = "answer" if self._p_answer(f"{text}:{i}") < p else "refuse"
        return Sample(label, None, "stop", 0, completion)

    async def __call__(self, messages, *, n=1, max_tokens=64, top_logprobs=20, **_):
        want = self.logprobs and top_logprobs > 0
        if want or n == 1:  # one call; a logprob-giving upstream honours n
            samples = [await self._one_call(messages, max_tokens, want, 0)]
            return samples * n
        calls = [self._one_call(messages, max_tokens, False, i) for i in range(n)]
        return list(await asyncio.gather(*calls))  # the fan-out of an upstream ignoring n


def load_prompts(count: int) -> list[list[dict]]:
    """Equal thirds of NQ-Open questions, SVAMP problems and HaluEval items with evidence."""
    third = max(count // 3, 1)
    nq = [json.loads(line)["question"] for line in open(DATA / "nq_open_dev.jsonl")][:third]
    svamp = [f"{d['Body']} {d['Question']}" for d in json.load(open(DATA / "svamp_dev.json"))]
    halu = [json.loads(line) for line in open(DATA / "halueval_qa_dev.jsonl")][:third]
    halu_text = [f"Evidence: {h['knowledge']}\nQuestion: {h['question']}" for h in halu]
    texts = nq + svamp[:third] + halu_text
    return [[{"role": "user", "content": t}] for t in texts[:count]]


async def one_short_call(latency: float, repeats: int = 10) -> float:
    """Median wall time of one short call to the same fake upstream."""
    upstream = SleepingUpstream(latency, logprobs=True)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await upstream([{"role": "user", "content": "x"}], n=1, max_tokens=2)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def measure(prompts, config: EdflConfig, latency: float, logprobs: bool) -> dict:
    """One gate for all decisions (as in the gateway); distinct prompts, so no cache hits,
    but the gate learns after the first decision that an upstream gives no logprobs."""
    per_calls, per_tokens, per_wall, verdicts = [], [], [], []
    gate = EdflGate(config)
    await gate.run([{"role": "user", "content": "Warm-up: who won in 1999?"}],
                   SleepingUpstream(latency, logprobs), model="warm-up")  # fmt: skip
    for messages in prompts:
        upstream = SleepingUpstream(latency, logprobs)
        started = time.perf_counter()
        result = await gate.run(messages, upstream, model="fake")
        per_wall.append(time.perf_counter() - started)
        per_calls.append(upstream.calls)
        per_tokens.append(upstream.completion_tokens)
        verdicts.append(result.verdict.value)
    return {
        "calls": statistics.mean(per_calls), "max_calls": max(per_calls),
        "median_calls": statistics.median(per_calls),
        "completion_tokens": statistics.mean(per_tokens), "wall_s": statistics.mean(per_wall),
        "max_wall_s": max(per_wall), "answer_rate": verdicts.count("answer") / len(verdicts),
    }  # fmt: skip


def main(
    items: int = typer.Option(30, help="decisions to measure"),
    m: int = typer.Option(6, help="skeletons per decision"),
    n: int = typer.Option(7, help="sampled decisions per prompt (fallback / reference)"),
    latency: float = typer.Option(0.2, help="seconds per fake upstream call"),
    no_logprobs: bool = typer.Option(False, "--no-logprobs", help="upstream without logprobs"),
) -> None:
    config = EdflConfig(m=m, n=n)
    prompts = load_prompts(items)
    single = asyncio.run(one_short_call(latency))
    stats = asyncio.run(measure(prompts, config, latency, logprobs=not no_logprobs))
    reference_calls = (1 + m) * n
    kind = "no logprobs, ignores n" if no_logprobs else "logprobs"
    print(f"upstream: {kind}; {latency * 1000:.0f} ms per call, parallel; {len(prompts)} decisions")
    print(f"{'':28}{'ours':>10}{'reference (1+m)·n':>20}")
    print(f"{'upstream calls / decision':28}{stats['calls']:>10.2f}{reference_calls:>20}")
    print(f"{'max calls / decision':28}{stats['max_calls']:>10}{reference_calls:>20}")
    print(f"{'output tokens / decision':28}{stats['completion_tokens']:>10.2f}")
    print(f"{'wall s / decision (mean)':28}{stats['wall_s']:>10.3f}")
    print(f"{'wall s / decision (max)':28}{stats['max_wall_s']:>10.3f}")
    print(f"{'median calls / decision':28}{stats['median_calls']:>10}")
    print(f"{'one short call, s':28}{single:>10.3f}")
    print(
        f"RESULT calls_per_decision={stats['calls']:.2f} max_calls={stats['max_calls']} "
        f"reference_calls={reference_calls} call_ratio={stats['calls'] / reference_calls:.3f} "
        f"tokens_per_decision={stats['completion_tokens']:.2f} "
        f"wall_ms={stats['wall_s'] * 1000:.1f} max_wall_ms={stats['max_wall_s'] * 1000:.1f} "
        f"wall_ratio_vs_one_call={stats['wall_s'] / single:.3f} "
        f"max_wall_ratio_vs_one_call={stats['max_wall_s'] / single:.3f}"
    )


if __name__ == "__main__":
    typer.run(main)
