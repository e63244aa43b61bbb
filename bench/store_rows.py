"""CPU per stored exchange inside one process: building the row, and writing it to SQLite
in batches of 1, 10 and 100, for a 7- and a 256-token answer with top-20 logprobs (a HALT
decision on the fake upstream's logprobs), then the writer end to end with and without
``gc.freeze()`` (the collector's full passes over a heap with torch and HALT loaded).

    .venv/bin/python bench/store_rows.py

The ratio that matters is within one run: one row built vs written, batch 1 vs 100,
frozen vs not.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.fake_upstream

from detectors.halt import HaltScorer  # noqa: E402
from policies import decide, load_policy_text  # noqa: E402
from proxy.chat.gate_session import Answer  # noqa: E402
from proxy.config import Settings  # noqa: E402
from proxy.store.database import open_database  # noqa: E402
from proxy.store.ids import new_response_id  # noqa: E402
from proxy.store.models import Exchange  # noqa: E402
from proxy.store.writer import ExchangeStore, Pending  # noqa: E402
from tests.fake_upstream import token_logprobs  # noqa: E402

POLICY = """
version: 1
routes:
  - {name: kept, default: true, profile: judged, store: {sample: 1.0}}
profiles:
  judged: {extends: strict-factual, action: annotate}
"""
N = 1000


def per_row_ms(start_cpu: float, n: int) -> float:
    return (time.process_time() - start_cpu) / n * 1e3


async def exchanges(halt: HaltScorer, policy, tokens: int) -> list[Pending]:
    words = ("Paris is the capital of France . " * 40).split()[:tokens]
    logprobs = token_logprobs(words, -0.05, 20)
    decision = decide(policy.profiles["judged"], {"halt": await halt.score(logprobs)},
                      route="kept")
    answer = Answer(0, " ".join(words), logprobs)
    return [Pending(time.time(), new_response_id(), "r", "fake", None, None,
                    [{"role": "user", "content": "What is the capital of France?"}],
                    decision, answer) for _ in range(N)]


async def main() -> None:
    policy = load_policy_text(POLICY)
    halt = HaltScorer.load_default()
    fields = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tokens in (7, 256):
            settings = Settings(store={"path": f"{tmp}/t{tokens}.sqlite3",
                                       "flush_interval_s": 0.0})
            engine = await open_database(settings)
            store = ExchangeStore(engine, settings.store, CollectorRegistry(), lambda: policy)
            items = await exchanges(halt, policy, tokens)
            start = time.process_time()
            rows = [store._row(item) for item in items]
            fields[f"t{tokens}_build_ms"] = per_row_ms(start, N)
            for batch in (1, 10, 100):
                for row in rows:
                    row["response_id"] = new_response_id()
                start = time.process_time()
                for k in range(0, N, batch):
                    async with engine.begin() as conn:
                        await conn.execute(insert(Exchange), rows[k:k + batch])
                fields[f"t{tokens}_insert_batch{batch}_ms"] = per_row_ms(start, N)
            del rows
            for frozen in (False, True):
                if frozen:
                    gc.collect()
                    gc.freeze()
                items = await exchanges(halt, policy, tokens)
                store.start()
                start = time.process_time()
                for item in items:
                    store.queue.put_nowait(item)
                await store.flush()
                fields[f"t{tokens}_writer_{'frozen' if frozen else 'plain'}_ms"] = per_row_ms(
                    start, N)
                await store.close()
                gc.unfreeze()
            await engine.dispose()
    for name, value in fields.items():
        print(f"{name:32s} {value:.3f} ms CPU per exchange")
    print("RESULT store_rows " + " ".join(f"{k}={v:.3f}" for k, v in fields.items()))


if __name__ == "__main__":
    asyncio.run(main())
