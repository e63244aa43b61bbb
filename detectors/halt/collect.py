"""Building HALT training data through any upstream: prompts, labels, records, the loop.

Datasets (files in a data directory, see shared/data/README.md): ``nq_open``
(``nq_open_dev.jsonl``), ``halueval`` (``halueval_qa_dev.jsonl``, its knowledge given as
evidence), ``svamp`` (``svamp_dev.json``), and ``arithmetic``: generated +/−/× problems of
integers in [2, 99], seeded (seed 11 reproduces the shared file's 300 items).

Labels (README.md): text answers are correct when a gold answer, NQ-Open-normalised, is
contained in the normalised answer; numeric answers when the *last* number of the answer
equals the gold value. Records have the format of ``halt_smollm2_dev.jsonl.gz``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from detectors.labels import contains_gold, number_matches
from detectors.sampling import Sample, Sampler

DATASETS = ("nq_open", "halueval", "svamp", "arithmetic")
TEXT_SUFFIX = "Answer with a short phrase."
NUMBER_SUFFIX = "Answer with just the number."
ARITHMETIC_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@dataclass(frozen=True)
class QAItem:
    id: str
    source: str  # the dataset's file stem, e.g. "nq_open_dev"; "arithmetic"
    kind: str  # "text" (containment of a gold answer) or "number" (last number equals gold)
    prompt: str
    gold: tuple  # gold answers (str) or values (int / float)
    index: int  # position in its dataset; the sampling seed is seed_base + index


@dataclass(frozen=True)
class CollectSettings:
    temperature: float = 0.7  # as the shared file
    max_tokens: int = 48  # as the shared file
    top_logprobs: int = 20  # OpenAI's maximum, what HALT reads
    seed_base: int = 1000  # sampling seed of item i is seed_base + i


# --- datasets -------------------------------------------------------------------------

def nq_open_items(data_dir: Path) -> list[QAItem]:
    rows = [json.loads(line) for line in (data_dir / "nq_open_dev.jsonl").open() if line.strip()]
    return [QAItem(f"nq-{i}", "nq_open_dev", "text", f"{r['question']}? {TEXT_SUFFIX}",
                   tuple(r["answer"]), i) for i, r in enumerate(rows)]


def halueval_items(data_dir: Path) -> list[QAItem]:
    path = data_dir / "halueval_qa_dev.jsonl"
    rows = [json.loads(line) for line in path.open() if line.strip()]
    return [QAItem(f"halueval-{i}", "halueval_qa_dev", "text",
                   f"Evidence: {r['knowledge']}\nQuestion: {r['question']}\n{TEXT_SUFFIX}",
                   (r["right_answer"],), i) for i, r in enumerate(rows)]


def svamp_items(data_dir: Path) -> list[QAItem]:
    rows = json.loads((data_dir / "svamp_dev.json").read_text())
    return [QAItem(f"svamp-{i}", "svamp_dev", "number",
                   f"{r['Body'].strip()} {r['Question'].strip()} {NUMBER_SUFFIX}",
                   (float(r["Answer"]),), i) for i, r in enumerate(rows)]


def arithmetic_items(n: int = 300, seed: int = 11, low: int = 2, high: int = 99) -> list[QAItem]:
    """``n`` problems ``a op b`` with a, b uniform in [low, high], op in +, −, ×."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        a, b = rng.randint(low, high), rng.randint(low, high)
        op = rng.choice(list(ARITHMETIC_OPS))
        items.append(QAItem(f"arith-{i}", "arithmetic", "number",
                            f"What is {a} {op} {b}? {NUMBER_SUFFIX}",
                            (ARITHMETIC_OPS[op](a, b),), i))
    return items


def load_items(dataset: str, data_dir: str | Path, limit: int | None = None) -> list[QAItem]:
    data_dir = Path(data_dir)
    loaders: dict[str, Callable[[], list[QAItem]]] = {
        "nq_open": lambda: nq_open_items(data_dir),
        "halueval": lambda: halueval_items(data_dir),
        "svamp": lambda: svamp_items(data_dir),
        "arithmetic": lambda: arithmetic_items(max(limit or 300, 1)),
    }
    if dataset not in loaders:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {list(loaders)}")
    items = loaders[dataset]()
    return items[:limit] if limit is not None else items


# --- labels ---------------------------------------------------------------------------

def is_correct(item: QAItem, answer: str) -> bool:
    if item.kind == "number":
        return number_matches(answer, item.gold)
    return contains_gold(answer, item.gold)


# --- records and the loop -------------------------------------------------------------

def make_record(item: QAItem, sample: Sample) -> dict:
    """One JSONL record; ``tokens`` is empty when the upstream returned no logprobs."""
    correct = is_correct(item, sample.text)
    tokens = [{"token": t.token, "logprob": t.logprob, "top": [[a, lp] for a, lp in t.top]}
              for t in sample.tokens or ()]
    return {"id": item.id, "source": item.source, "kind": item.kind, "gold": list(item.gold),
            "prompt": item.prompt, "answer": sample.text, "finish_reason": sample.finish_reason,
            "correct": correct, "hallucinated": not correct, "tokens": tokens}


def existing_ids(path: str | Path) -> set[str]:
    """Ids already in the output (for resuming); a torn last line is ignored."""
    path = Path(path)
    ids: set[str] = set()
    if not path.exists():
        return ids
    for line in path.open(encoding="utf-8"):
        try:
            ids.add(json.loads(line)["id"])
        except (json.JSONDecodeError, KeyError):
            continue
    return ids


async def collect(items: Iterable[QAItem], sampler: Sampler, out: str | Path,
                  settings: CollectSettings = CollectSettings(),
                  on_record: Callable[[dict], None] | None = None) -> int:
    """Answer every item not yet in ``out`` and append its record; returns how many were
    written. One request at a time (the embedded llama.cpp server serves one anyway)."""
    out = Path(out)
    done = existing_ids(out)
    written = 0
    with out.open("a", encoding="utf-8") as fh:
        for item in items:
            if item.id in done:
                continue
            samples = await sampler(
                [{"role": "user", "content": item.prompt}], n=1,
                temperature=settings.temperature, max_tokens=settings.max_tokens,
                top_logprobs=settings.top_logprobs, seed=settings.seed_base + item.index)
            record = make_record(item, samples[0])
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            written += 1
            if on_record:
                on_record(record)
    return written


def pending(items: Sequence[QAItem], out: str | Path) -> int:
    """How many of ``items`` are not yet in ``out``."""
    done = existing_ids(out)
    return sum(1 for item in items if item.id not in done)
