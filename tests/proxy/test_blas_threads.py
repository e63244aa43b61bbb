"""The gateway's BLAS thread pools are limited to ``torch_threads`` once it has started,
scipy's too, which loads with the detectors (it used to keep one thread per core). A
spinning BLAS pool on a busy machine made a 1x128 product 10x slower."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import asyncio, json
from threadpoolctl import threadpool_info
from proxy.app import policy_gatekeeper
from proxy.config import Settings
from proxy.metrics import Metrics
from proxy.registry import UpstreamRegistry

async def main():
    async with policy_gatekeeper(Settings(torch_threads=1), UpstreamRegistry([]), Metrics(),
                                 None):
        print(json.dumps([[i["filepath"], i["num_threads"]] for i in threadpool_info()
                          if i["user_api"] == "blas"]))

asyncio.run(main())
"""


def test_every_blas_pool_runs_torch_threads_once_the_detectors_are_loaded():
    # a fresh process: the detectors' BLAS must load during the start, as in `hallgate serve`
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    pools = json.loads(out.strip().splitlines()[-1])
    assert pools, "no BLAS loaded: nothing to check"
    assert all(threads == 1 for _, threads in pools), pools
