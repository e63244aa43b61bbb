import gzip
import json

import pytest
import torch

from evaluation.data import DEFAULT_DATA_DIR

SHARED_DATA = DEFAULT_DATA_DIR / "halt_smollm2_dev.jsonl.gz"  # ../shared/data beside the repo


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch.set_num_threads(1)  # the dev machine has 2 cores shared by everyone


@pytest.fixture(scope="session")
def shared_records() -> list[dict]:
    """The first answers of the shared data file (skipped where it is absent)."""
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not available")
    out = []
    with gzip.open(SHARED_DATA, "rt") as fh:
        for line in fh:
            out.append(json.loads(line))
            if len(out) == 40:
                break
    return out
