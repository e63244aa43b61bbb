"""``hallgate serve`` that counts its garbage collections: the number per generation and
the wall time inside them, written as JSON to ``$GC_OUT`` on SIGUSR1 and at exit
(bench/store_cpu.py reads it).

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


if __name__ == "__main__":
    gc.callbacks.append(_timed)
    atexit.register(dump)
    signal.signal(signal.SIGUSR1, dump)
    from proxy.cli import app

    sys.argv = ["hallgate", "serve", *sys.argv[1:]]
    app()
