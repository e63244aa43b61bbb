"""``hallgate serve`` that counts its garbage collections: the number per generation and
the wall time inside them, written as JSON to ``$GC_OUT`` on SIGUSR1 and at exit
(bench/store_cpu.py reads it); at exit it also prints them as its RESULT line.

    GC_OUT=gc.json .venv/bin/python bench/serve_gc.py --config hallgate.yaml --port 8080
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOTALS = {str(g): [0, 0.0] for g in range(3)}  # generation -> [collections, seconds]
_started: list[float] = [0.0]


def _timed(phase: str, info: dict) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        entry = TOTALS[str(info["generation"])]
        entry[0] += 1
        entry[1] += time.perf_counter() - _started[0]


def dump(*_args) -> None:
    Path(os.environ["GC_OUT"]).write_text(json.dumps({"gc": TOTALS,
                                                      "frozen": gc.get_freeze_count()}))


def report() -> None:
    """At exit: the file, and the totals as one RESULT line."""
    dump()
    fields = " ".join(f"gen{g}_collections={n} gen{g}_s={seconds:.4f}"
                      for g, (n, seconds) in TOTALS.items())
    print(f"RESULT {fields} frozen={gc.get_freeze_count()}", flush=True)


if __name__ == "__main__":
    gc.callbacks.append(_timed)
    atexit.register(report)
    # uvicorn re-raises the SIGTERM/SIGINT it stopped on once it has shut down, under the
    # handlers it found: these end the process through sys.exit, so atexit runs
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda signum, _frame: sys.exit(128 + signum))
    signal.signal(signal.SIGUSR1, dump)
    from proxy.cli import app

    sys.argv = ["hallgate", "serve", *sys.argv[1:]]
    app()
