"""Detector CPU work never stalls the event loop. While a 1 MB prompt and a
30,000-message conversation go through the strict route (HALT + EDFL, whose skeleton
masking took seconds on the loop), /healthz keeps answering in under 100 ms; and EDFL
reads a bounded view of the prompt (detectors/bounds.py)."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from tests.conftest import fake_settings

POLICY = """
version: 1
routes:
  - {name: strict, match: {header: strict}, profile: strict-edfl}
  - {name: default, default: true, profile: strict-edfl}
profiles:
  strict-edfl:
    extends: strict-factual
    detectors: {halt: {enabled: true, threshold: 1.0}, edfl: {enabled: true, m: 6}}
"""

WORDS = ("The Battle of Hastings in 1066 was fought by William of Normandy near "
         "\"Senlac Hill\" with 7000 men and Harold Godwinson's army of 1066 housecarls").split()


def big_prompt(chars: int = 1_000_000) -> list[dict]:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(chars // 5))[:chars]
    return [{"role": "user", "content": text + "\nWho won the battle?"}]


def many_messages(count: int = 30_000) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant",
             "content": f"Paris in {1900 + i % 100}"} for i in range(count)]


@pytest.fixture
def strict_gateway(fake_upstream, start_gateway, tmp_path) -> str:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(policy),
                                       max_body_bytes=4 * 1024 * 1024))


def probe_while(url: str, busy: threading.Event) -> list[float]:
    """/healthz latencies measured while ``busy`` is set."""
    latencies = []
    with httpx.Client(timeout=30) as http:
        http.get(f"{url}/healthz")  # connect first: measure the loop, not the handshake
        while busy.is_set():
            start = time.perf_counter()
            assert http.get(f"{url}/healthz").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.02)
    return latencies


@pytest.mark.parametrize("messages", [big_prompt, many_messages], ids=["1MB", "30k_messages"])
def test_healthz_stays_fast_while_a_huge_strict_request_is_in_flight(strict_gateway, messages,
                                                                     fake_upstream):
    fake_upstream.script.latency_s = 0.3  # keep the request in flight long enough to probe
    client = openai.OpenAI(base_url=f"{strict_gateway}/v1", api_key="x", max_retries=0,
                           timeout=120, default_headers={"x-hallgate-route": "strict"})
    body = messages()
    busy = threading.Event()
    busy.set()
    results: dict = {}

    def send() -> None:
        try:
            results["resp"] = client.chat.completions.create(model="fake", messages=body)
        finally:
            busy.clear()

    worker = threading.Thread(target=send)
    worker.start()
    latencies = probe_while(strict_gateway, busy)
    worker.join()
    meta = results["resp"].model_extra["hallgate"]
    assert meta["route"] == "strict" and meta["detectors"]["edfl"]["status"] == "ok"
    assert len(latencies) >= 5, latencies  # a stalled loop answers only a probe or two
    # The probes share one process (and its GIL) with the SDK thread that serialises the
    # huge body and with the in-process fake upstream that parses it, on a shared 2-core
    # machine: single probes can wait on those (one waited 1.15 s in a full run). So: 95%
    # under 100 ms, none over 2 s (before the fix, one probe waited 4.3 s and the 30k
    # request timed out).
    ordered = sorted(latencies)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    assert p95 < 0.1, f"/healthz p95 {p95 * 1000:.0f} ms: {ordered[-5:]}"
    assert ordered[-1] < 2.0, f"/healthz took up to {ordered[-1] * 1000:.0f} ms"
