"""The embedded llama.cpp server never outlives its gateway, even one killed by SIGKILL
(the OOM killer, a harness's timeout): no orphan holding its memory and its port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from proxy.embedded import free_port

pytestmark = pytest.mark.model


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for its new parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux parent-death signal")
def test_the_embedded_model_dies_with_a_gateway_killed_by_sigkill(tmp_path):
    port = free_port()
    (tmp_path / "hallgate.yaml").write_text("embedded:\n  n_threads: 1\n")
    gateway = subprocess.Popen(
        [sys.executable, "-c", "from proxy.cli import app; app()", "serve", "--port",
         str(port), "--config", str(tmp_path / "hallgate.yaml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    model = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert gateway.poll() is None, "the gateway exited at start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the gateway did not become ready")
        (model,) = children(gateway.pid)  # the llama.cpp server
        assert not gone(model)
        os.kill(gateway.pid, signal.SIGKILL)
        gateway.wait()
        deadline = time.monotonic() + 10
        while not gone(model) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(model), f"the embedded model (pid {model}) outlived its gateway"
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
        if model is not None and not gone(model):  # a failed run leaves no orphan behind
            os.kill(model, signal.SIGKILL)
