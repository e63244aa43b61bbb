"""CPU per stored exchange, split where it is paid: the gateway's frame
(``records.exchange_frame``, on the event loop), the writer process's row
(``writer_process.build_rows``) and its INSERT in batches of 1, 10 and 100, for a 7- and a
256-token answer with top-20 logprobs (a HALT decision on the fake upstream's logprobs);
then the store end to end: the gateway thread's CPU per exchange from ``offer`` to the
writer process's ack, and that process's own CPU per exchange. The heap is frozen after
HALT loads, as the gateway's is after its start-up.

    .venv/bin/python bench/store_rows.py

The ratio that matters is within one run: what the gateway pays against what the writer
process pays, batch 1 against 100.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import CollectorRegistry
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.fake_upstream

from overhead import cpu_seconds  # noqa: E402  (this folder is on sys.path)

from detectors.halt import HaltScorer  # noqa: E402
from policies import decide, load_policy_text  # noqa: E402
from proxy.chat.gate_session import Answer  # noqa: E402
from proxy.config import Settings  # noqa: E402
from proxy.store.database import open_database  # noqa: E402
from proxy.store.ids import new_response_id  # noqa: E402
from proxy.store.models import Exchange  # noqa: E402
from proxy.store.records import exchange_frame  # noqa: E402
from proxy.store.writer import ExchangeStore  # noqa: E402
from proxy.store.writer_process import build_rows  # noqa: E402
from tests.fake_upstream import token_logprobs  # noqa: E402

POLICY = """
version: 1
routes:
  - {name: kept, default: true, profile: judged, store: {sample: 1.0}}
profiles:
  judged: {extends: strict-factual, action: annotate}
"""
N = 1000


def per_row_ms(start_cpu: float, n: int, clock=time.process_time) -> float:
    return (clock() - start_cpu) / n * 1e3


async def exchange(halt: HaltScorer, policy, tokens: int) -> SimpleNamespace:
    words = ("Paris is the capital of France . " * 40).split()[:tokens]
    logprobs = token_logprobs(words, -0.05, 20)
    decision = decide(policy.profiles["judged"], {"halt": await halt.score(logprobs)},
                      route="kept")
    return SimpleNamespace(decision=decision, answer=Answer(0, " ".join(words), logprobs),
                           messages=[{"role": "user",
                                      "content": "What is the capital of France?"}])


def frame_of(ex: SimpleNamespace) -> bytes:
    return exchange_frame(response_id=new_response_id(), request_id="r",
                          created_at=time.time(), model="fake", key_name=None, bundle_id=None,
                          messages=ex.messages, decision=ex.decision, answer=ex.answer,
                          include_prompt=False)


def session() -> SimpleNamespace:
    return SimpleNamespace(response_id=new_response_id(), route="kept", model="fake",
                           messages=[{"role": "user", "content": "What is the capital?"}],
                           ctx=SimpleNamespace(request_id="r", key_name=None),
                           calibration=SimpleNamespace(bundle=None))


async def main() -> None:
    policy = load_policy_text(POLICY)
    halt = HaltScorer.load_default()
    gc.collect()
    gc.freeze()  # as the gateway after its start-up (proxy/app.py): torch's heap is not
    # walked by every full collection the rows' allocations trigger
    fields = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tokens in (7, 256):
            settings = Settings(store={"path": f"{tmp}/t{tokens}.sqlite3",
                                       "flush_interval_s": 0.0})
            engine = await open_database(settings)
            ex = await exchange(halt, policy, tokens)
            # this thread's CPU: torch's threads may still spin after HALT's scoring
            start = time.thread_time()
            frames = [frame_of(ex) for _ in range(N)]
            fields[f"t{tokens}_gateway_frame_ms"] = per_row_ms(start, N, time.thread_time)
            start = time.thread_time()
            rows, _ = build_rows(frames, include_prompt=False)  # the writer process's step
            fields[f"t{tokens}_writer_row_ms"] = per_row_ms(start, N, time.thread_time)
            for batch in (1, 10, 100):
                for row in rows:
                    row["response_id"] = new_response_id()
                start = time.process_time()
                for k in range(0, N, batch):
                    async with engine.begin() as conn:
                        await conn.execute(insert(Exchange), rows[k:k + batch])
                fields[f"t{tokens}_writer_insert_batch{batch}_ms"] = per_row_ms(start, N)
            del rows, frames
            store = ExchangeStore(engine, settings.store, CollectorRegistry(), lambda: policy)
            await store.start()
            writer_before = cpu_seconds(store.writer.proc.pid)
            start = time.thread_time()
            for _ in range(N):
                store.offer(session(), ex.decision, ex.answer)
                await asyncio.sleep(0)  # a request's turn of the event loop
            await store.flush()
            fields[f"t{tokens}_end_to_end_gateway_ms"] = per_row_ms(start, N, time.thread_time)
            fields[f"t{tokens}_end_to_end_writer_process_ms"] = (
                cpu_seconds(store.writer.proc.pid) - writer_before) * 1e3 / N
            await store.close()
            await engine.dispose()
    for name, value in fields.items():
        print(f"{name:36s} {value:.3f} ms CPU per exchange")
    print("RESULT store_rows " + " ".join(f"{k}={v:.3f}" for k, v in fields.items()))


if __name__ == "__main__":
    asyncio.run(main())
