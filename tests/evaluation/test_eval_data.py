"""Evaluation subsets: seeded, reproducible, and free of HALT's training answers."""

from __future__ import annotations

import gzip
import json

import pytest

from evaluation.data import eligible_ids_filter, load_items
from evaluation.evaluate import DEFAULT_DATA_DIR

pytestmark = pytest.mark.skipif(not (DEFAULT_DATA_DIR / "nq_open_dev.jsonl").exists(),
                                reason="shared data not present")


def test_subsets_are_seeded_and_skip_halts_training_items():
    first = load_items("all", DEFAULT_DATA_DIR, per_source=5, seed=0)
    assert [i.id for i in first] == [i.id for i in load_items("all", DEFAULT_DATA_DIR,
                                                              per_source=5, seed=0)]
    assert [i.id for i in first] != [i.id for i in load_items("all", DEFAULT_DATA_DIR,
                                                              per_source=5, seed=1)]
    with gzip.open(DEFAULT_DATA_DIR / "halt_smollm2_dev.jsonl.gz", "rt") as fh:
        pool = {json.loads(line)["id"] for line in fh}
    fresh = [i for i in first if i.source != "halueval_qa_dev"]
    assert {i.source for i in fresh} == {"nq_open_dev", "svamp_dev", "arithmetic"}
    assert not {i.id for i in fresh} & pool


def test_checkpoint_test_split_items_are_eligible(tmp_path):
    checkpoint = tmp_path / "ckpt.json"
    checkpoint.write_text(json.dumps({"split": {"test_ids": ["halueval-3"]}}))
    eligible = eligible_ids_filter(DEFAULT_DATA_DIR, checkpoint)
    assert eligible("halueval-3") and not eligible("halueval-4")
    assert eligible("nq-3000") and not eligible("nq-10")
