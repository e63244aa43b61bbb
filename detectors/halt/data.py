"""Answers with token logprobs as HALT training data: loading, splitting, batching.

Records are the collected JSONL format (``detectors.halt.collect``), optionally gzipped:
``{id, source, kind, prompt, gold, answer, finish_reason, correct, hallucinated,
tokens: [{token, logprob, top: [[token, logprob], ...]}]}``. Label 1 = hallucinated.
The synthetic generator is the reference's (Sec. 4.1); it is for smoke tests only.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from detectors.halt.adapter import TOP_K, logprob_matrix
from detectors.halt.features import halt_input


@dataclass(frozen=True)
class Example:
    """One answer ready for the model."""

    id: str
    source: str
    label: int  # 1 = hallucinated, 0 = correct
    features: np.ndarray  # (T, 25) float32
    mean_logprob: float  # mean selected-token logprob, the single-pass baseline's input


def read_records(path: str | Path) -> Iterator[dict]:
    """Yield the JSON records of a ``.jsonl`` or ``.jsonl.gz`` file."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def example_from_record(record: dict) -> Example | None:
    """None when the record has no tokens (nothing to score)."""
    matrix = logprob_matrix(record.get("tokens") or ())
    if matrix.n_tokens == 0:
        return None
    return Example(
        id=str(record["id"]),
        source=str(record.get("source", "unknown")),
        label=int(bool(record["hallucinated"])),
        features=halt_input(matrix.values),
        mean_logprob=float(matrix.values[:, 0].mean()),
    )


def load_examples(paths: Sequence[str | Path]) -> list[Example]:
    """All scorable records of all files, first occurrence of an id wins."""
    seen: set[str] = set()
    out = []
    for path in paths:
        for record in read_records(path):
            ex = example_from_record(record)
            if ex is not None and ex.id not in seen:
                seen.add(ex.id)
                out.append(ex)
    return out


@dataclass(frozen=True)
class Split:
    train: list[Example]
    val: list[Example]
    test: list[Example]


def stratified_split(examples: Sequence[Example], seed: int,
                     fractions: tuple[float, float] = (0.70, 0.15)) -> Split:
    """Seeded split stratified by (source, label): every source keeps its class ratio."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, int], list[Example]] = {}
    for ex in examples:
        groups.setdefault((ex.source, ex.label), []).append(ex)
    train, val, test = [], [], []
    for key in sorted(groups):
        items = groups[key]
        order = rng.permutation(len(items))
        n_train = int(round(fractions[0] * len(items)))
        n_val = int(round(fractions[1] * len(items)))
        train += [items[i] for i in order[:n_train]]
        val += [items[i] for i in order[n_train:n_train + n_val]]
        test += [items[i] for i in order[n_train + n_val:]]
    return Split(train, val, test)


def collate(features: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded batch: (B, T_max, 25) float32 and lengths (B,) int64."""
    xs = [torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)) for f in features]
    lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.int64)
    return pad_sequence(xs, batch_first=True), lengths


def synthetic_logprobs(seq_len: int, hallucinated: bool, rng: np.random.Generator,
                       top_k: int = TOP_K) -> np.ndarray:
    """The reference's synthetic (T, K) matrix (Sec. 4.1): hallucinated = flatter rows."""
    if hallucinated:
        base = rng.uniform(-4.0, -0.3, seq_len)
        gap = rng.uniform(0.05, 0.3, seq_len)
    else:
        base = rng.uniform(-1.5, -0.1, seq_len)
        gap = rng.uniform(0.5, 2.0, seq_len)
    alts = base[:, None] - gap[:, None] * np.arange(1, top_k)  # (T, K-1)
    alts += rng.uniform(-0.5, 0.5, (seq_len, top_k - 1))
    return np.concatenate([base[:, None], alts], axis=1)


def synthetic_examples(n: int, seed: int, min_len: int = 10, max_len: int = 150,
                       hallucination_rate: float = 0.5) -> list[Example]:
    """Synthetic answers for smoke tests; never for a checkpoint that is shipped."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = int(rng.random() < hallucination_rate)
        lp = synthetic_logprobs(int(rng.integers(min_len, max_len + 1)), bool(label), rng)
        out.append(Example(f"synthetic-{i}", "synthetic", label, halt_input(lp),
                           float(lp[:, 0].mean())))
    return out
