"""`kill -9` of a gateway writing to its SQLite store: every exchange it had written is
still there, at most the queued ones are lost, the file is intact (a new gateway starts on
it and takes labels for what the killed one stored), and its writer process, left without
input, writes what it was handed and exits."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from proxy.embedded import free_port
from tests.proxy.store.helpers import POLICY, client, metric, store_settings


def serve(config_path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve", "--config",
                             str(config_path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the gateway exited before it was ready"
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the gateway did not get ready")


def children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()]


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit status waits for whoever adopted it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_loses_at_most_the_queued_exchanges_and_never_the_file(fake_upstream,
                                                                       start_gateway,
                                                                       tmp_path):
    db = tmp_path / "exchanges.sqlite3"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    config = tmp_path / "hallgate.yaml"
    config.write_text(yaml.safe_dump({
        "host": "127.0.0.1", "policy_file": str(policy), "log_level": "warning",
        "models": [{"name": "fake", "model": "fake-model", "api_base": fake_upstream.api_base}],
        # a batch gathers for a second: the kill finds exchanges still queued
        "store": {"path": str(db), "flush_interval_s": 1.0}}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(config, port)
    try:
        ids = [client(url).chat.completions.create(
            model="fake", messages=[{"role": "user", "content": f"q{i}"}]).id
            for i in range(40)]
        sampled = metric(url, "hallgate_store_sampled_total")
        written = metric(url, "hallgate_store_written_total")
        [writer] = children(proc.pid)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while running(writer):
        assert time.monotonic() < deadline, "the writer process outlived its gateway"
        time.sleep(0.05)
    assert sampled == len(ids)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = [r[0] for r in conn.execute("SELECT response_id FROM exchanges ORDER BY id")]
    lost = len(ids) - len(stored)
    # everything written before the kill survived; only what was still queued is lost
    assert written <= len(stored) <= sampled and stored == ids[:len(stored)]
    print(f"sampled {sampled:.0f}, written at the kill {written:.0f}, on disk "
          f"{len(stored)}, lost {lost}")
    url = start_gateway(store_settings(fake_upstream, tmp_path, path=str(db)))
    if stored:
        resp = httpx.post(f"{url}/v1/feedback", json={"id": stored[-1], "label": "correct"})
        assert resp.status_code == 200, resp.text
