"""A recording's answers as HALT training data, and the split that keeps them honest.

    records = halt_records(Path("recordings/smollm2-135m"))   # HALT's collected format
    part = recording_split(item_id)                          # "halt_train" | "held_out"

Every item of a recording has its answer among the exchanges (with top-20 logprobs) and
its label in ``results.jsonl``. The answer exchange is found by its text and token count:
the semantic gate's samples and EDFL's decisions are shorter calls with other prompts.
Answers labelled elsewhere (``hallgate tune --data``) are already in this format, in
``labelled.jsonl``.

The split is by a hash of the item id (crc32 mod 10 < 4: 40 % to HALT's training pool), so
an item's side never changes as a recording grows. A HALT trained with the ``halt_train``
part must be judged, and any combiner over its scores fitted and judged, on ``held_out``
items only.
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from pathlib import Path

from evaluation.data import load_items
from proxy.upstream.recording import exchange_files, read_exchanges

HALT_TRAIN_BUCKETS = 4  # of 10
LABELLED_FILE = "labelled.jsonl"  # answers labelled elsewhere, with their logprobs, in the
# format below (hallgate tune --data); their results lines say `"labelled": true`


def recording_split(item_id: str) -> str:
    """``halt_train`` for 40 % of the ids (stable), else ``held_out``."""
    bucket = zlib.crc32(item_id.encode()) % 10
    return "halt_train" if bucket < HALT_TRAIN_BUCKETS else "held_out"


def _answers_by_text(recording: Path) -> dict[tuple[str, int], list[dict]]:
    """(answer text, token count) -> the logprob entries of each exchange with that answer."""
    out: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for path in exchange_files(recording):
        for row in read_exchanges(path):
            for choice in row["response"].get("choices") or ():
                entries = (choice.get("logprobs") or {}).get("content") or []
                text = (choice.get("message") or {}).get("content") or ""
                if entries:
                    out[(text, len(entries))].append(entries)
    return out


def halt_records(recording: Path) -> list[dict]:
    """One record per finished item whose answer exchange was found, in HALT's collected
    format (``detectors/halt/data.py``): id, source, kind, prompt, gold, answer,
    finish_reason, correct, hallucinated, tokens [{token, logprob, top}]."""
    from evaluation.evaluate import ITEMS_FILE, read_results

    items = {item.id: item for item in load_items(str(recording / ITEMS_FILE), recording)
             } if (recording / ITEMS_FILE).exists() else {}
    answers = _answers_by_text(recording)
    results = read_results(recording / "results.jsonl")
    labelled = recording / LABELLED_FILE
    out = [row for line in (labelled.read_text().splitlines() if labelled.exists() else ())
           if line.strip() and (row := json.loads(line))["id"] in results]
    for item_id, result in results.items():
        found = answers.get((result["answer"], result["answer_tokens"]))
        item = items.get(item_id)
        if not found or item is None:
            continue
        tokens = [{"token": e.get("token"), "logprob": e.get("logprob"),
                   "top": [[t.get("token"), t.get("logprob")] for t in e.get("top_logprobs")
                           or ()]} for e in found[0]]
        out.append({"id": item_id, "source": result["source"], "kind": item.kind,
                    "prompt": item.prompt, "gold": list(item.gold),
                    "answer": result["answer"], "finish_reason": result.get("finish_reason"),
                    "correct": result["correct"], "hallucinated": result["hallucinated"],
                    "tokens": tokens})
    return out
