"""Gateways with the store on, and what the tests read back from it."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import httpx
import openai

from tests.conftest import fake_settings

POLICY = """
version: 1
routes:
  - {name: kept, match: {header: kept, path_prefix: /kept}, profile: judged, store: {sample: 1.0}}
  - {name: semantic, match: {header: semantic}, profile: sampled, store: {sample: 1.0}}
  - {name: default, default: true, profile: judged}
profiles:
  judged:
    extends: strict-factual
    action: annotate
    detectors: {halt: {enabled: true}}
  sampled:
    extends: strict-factual
    action: annotate
    detectors:
      halt: {enabled: true}
      semantic: {enabled: true, M: 3, m: 2, entailment: lexical}
"""


def store_settings(fake, tmp_path: Path, policy: str = POLICY, extra: dict | None = None,
                   **store):
    """Settings on the fake upstream with ``policy`` and the store (SQLite in tmp_path
    unless ``url`` or ``path`` say otherwise); ``extra``: more gateway settings."""
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    if "url" not in store:
        store.setdefault("path", str(tmp_path / "exchanges.sqlite3"))
    return fake_settings(fake, policy_file=str(path), store=store, **(extra or {}))


def client(url: str, route: str | None = "kept", key: str = "unused") -> openai.OpenAI:
    headers = {"x-hallgate-route": route} if route else {}
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0,
                         default_headers=headers)


def metric(url: str, name: str) -> float:
    """The value of one sample line of /metrics (0 when absent)."""
    text = httpx.get(f"{url}/metrics").text
    pattern = re.compile(rf"^{re.escape(name)} ([0-9.e+-]+)$", re.M)
    found = pattern.search(text)
    return float(found.group(1)) if found else 0.0


def wait_written(url: str, count: int, timeout: float = 15.0) -> None:
    """Until the store has written ``count`` exchanges (its own counter says so)."""
    deadline = time.monotonic() + timeout
    while metric(url, "hallgate_store_written_total") < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"the store wrote fewer than {count} exchanges")
        time.sleep(0.02)


def sqlite_rows(path: Path, table: str = "exchanges") -> list[dict]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]


def sqlite_dump(path: Path) -> str:
    """Every row of every table, as text (what the database holds, WAL included)."""
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump())
