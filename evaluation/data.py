"""Labelled QA items for ``hallgate eval``: seeded subsets that HALT was not trained on.

    items = load_items("all", data_dir, per_source=12, seed=0)   # or a name, or a JSONL file
    correct = is_correct(item, answer_text)

Prompts and labels are HALT's (detectors/halt/collect.py), so the answers look like the
ones its checkpoint was trained on. HALT learned from the answers in
shared/data/halt_smollm2_dev.jsonl.gz (NQ-Open 0-699, all of HaluEval, SVAMP 0-299,
arithmetic 0-299); an evaluation of HALT on those would be an evaluation on its training
data. So by default an item is eligible only if its id is not in that file, or it is in
the checkpoint's own held-out test split (``split.test_ids`` of the checkpoint JSON):
NQ-Open from item 700 on, SVAMP from 300 on, new arithmetic problems (300-599 of the same
seeded generator), and HaluEval's test-split items only.

A JSONL file of items ``{id, source, kind: text|number, prompt, gold: [...]}`` is accepted
as a dataset too (every item eligible).
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import random
from pathlib import Path

from detectors.halt.checkpoint import CHECKPOINT_DIR, DEFAULT_NAME
from detectors.halt.collect import (
    QAItem,
    arithmetic_items,
    halueval_items,
    is_correct,
    nq_open_items,
    svamp_items,
)

SOURCES: tuple[str, ...] = ("nq_open", "svamp", "halueval", "arithmetic")
# The shared data directory beside the repository (../shared/data), unless HALLGATE_DATA_DIR
# names another; every command that reads it also takes --data-dir.
DEFAULT_DATA_DIR = Path(os.environ.get(
    "HALLGATE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
TRAINING_FILE = "halt_smollm2_dev.jsonl.gz"  # HALT's training pool, in the data dir

__all__ = ["DEFAULT_DATA_DIR", "SOURCES", "QAItem", "eligible_ids_filter", "is_correct",
           "load_items"]


def load_source(name: str, data_dir: Path) -> list[QAItem]:
    loaders = {"nq_open": nq_open_items, "svamp": svamp_items, "halueval": halueval_items,
               "arithmetic": lambda _: arithmetic_items(600)}  # 300-599 are new problems
    if name not in loaders:
        raise ValueError(f"unknown dataset '{name}' (known: {', '.join(SOURCES)}, all, "
                         f"or a JSONL file)")
    return loaders[name](data_dir)


def _items_from_file(path: Path) -> list[QAItem]:
    items = []
    for i, line in enumerate(line for line in path.open() if line.strip()):
        row = json.loads(line)
        items.append(QAItem(str(row["id"]), row.get("source", path.stem), row["kind"],
                            row["prompt"], tuple(row["gold"]), i))
    return items


def eligible_ids_filter(data_dir: Path, checkpoint_json: Path | None = None):
    """A predicate on item ids: True unless HALT trained (or validated) on the item."""
    pool_path = data_dir / TRAINING_FILE
    if not pool_path.exists():
        return lambda _id: True
    with gzip.open(pool_path, "rt") as fh:
        pool = {json.loads(line)["id"] for line in fh if line.strip()}
    checkpoint_json = checkpoint_json or CHECKPOINT_DIR / f"{DEFAULT_NAME}.json"
    held_out: set[str] = set()
    if checkpoint_json.exists():
        split = json.loads(checkpoint_json.read_text()).get("split") or {}
        held_out = set(split.get("test_ids") or ())
    return lambda item_id: item_id not in pool or item_id in held_out


def load_items(dataset: str, data_dir: Path, per_source: int | None = None, seed: int = 0,
               exclude_halt_training: bool = True) -> list[QAItem]:
    """A dataset name (one of SOURCES or ``all``) or a JSONL file; at most ``per_source``
    eligible items of each source, a seeded random subset, the sources interleaved."""
    path = Path(dataset)
    if path.suffix in (".jsonl", ".json") and path.exists():
        items = _items_from_file(path)
        eligible = None
    else:
        names = SOURCES if dataset == "all" else (dataset,)
        items = [item for name in names for item in load_source(name, data_dir)]
        eligible = eligible_ids_filter(data_dir) if exclude_halt_training else None
    by_source: dict[str, list[QAItem]] = {}
    for item in items:
        if eligible is None or eligible(item.id):
            by_source.setdefault(item.source, []).append(item)
    chosen: list[list[QAItem]] = []
    for name, rows in by_source.items():
        if per_source is not None and per_source < len(rows):
            rng = random.Random(f"{seed}:{name}")
            rows = [rows[i] for i in sorted(rng.sample(range(len(rows)), per_source))]
        chosen.append(rows)
    # round-robin over the sources, so a run cut short by its time budget covers them all
    return [row for group in itertools.zip_longest(*chosen) for row in group if row]


def messages_for(item: QAItem) -> list[dict]:
    return [{"role": "user", "content": item.prompt}]
