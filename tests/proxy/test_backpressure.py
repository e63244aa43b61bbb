"""A global and a per-key in-flight limit. Past a limit the gateway answers
429 in the OpenAI shape with Retry-After at once (it used to queue without bound), the
upstream never sees more than the limit, and the other clients are served."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import openai
import pytest

from tests.conftest import fake_settings

MESSAGES = [{"role": "user", "content": "hi"}]


def burst(url: str, keys: list[str]) -> list[tuple[str, object]]:
    """One openai SDK client per entry of ``keys``, all sending at once."""
    barrier = threading.Barrier(len(keys))
    results: list[tuple[str, object]] = [("", None)] * len(keys)

    def one(i: int, key: str) -> None:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)
        barrier.wait()
        try:
            resp = client.chat.completions.create(model="fake", messages=MESSAGES)
            results[i] = (key, resp)
        except openai.APIStatusError as exc:
            results[i] = (key, exc)

    threads = [threading.Thread(target=one, args=(i, k)) for i, k in enumerate(keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def assert_429_shape(exc: openai.APIStatusError, code: str) -> None:
    assert isinstance(exc, openai.RateLimitError) and exc.status_code == 429
    assert exc.body["type"] == "rate_limit_error" and exc.body["code"] == code
    assert exc.response.headers["retry-after"] == "2"


@pytest.fixture
def limited(fake_upstream, start_gateway, monkeypatch):
    fake_upstream.script.latency_s = 0.6
    for name in ("A", "B"):
        monkeypatch.setenv(f"HG_KEY_{name}", f"sk-{name}")

    def start(**limits) -> str:
        return start_gateway(fake_settings(
            fake_upstream, limits={"retry_after_s": 1.5, **limits},
            api_keys=[{"name": n, "key_env": f"HG_KEY_{n}"} for n in ("A", "B")]))

    return start


def test_global_limit_holds_and_the_rest_are_served(limited, fake_upstream):
    url = limited(max_in_flight=4, max_in_flight_per_key=None)
    results = burst(url, ["sk-A"] * 12 + ["sk-B"] * 12)
    served = [r for _, r in results if not isinstance(r, Exception)]
    refused = [r for _, r in results if isinstance(r, Exception)]
    assert 4 <= len(served) and refused, (len(served), len(refused))
    for exc in refused:
        assert_429_shape(exc, "global_concurrency_limit")
    assert fake_upstream.max_in_flight <= 4
    metrics = httpx.get(f"{url}/metrics").text
    assert f'hallgate_limit_rejected_total{{scope="global"}} {float(len(refused))}' in metrics
    assert "hallgate_limit_in_flight 0.0" in metrics
    again = burst(url, ["sk-A"])  # slots are given back
    assert not isinstance(again[0][1], Exception)


def test_per_key_limit_spares_the_other_keys(limited, fake_upstream):
    url = limited(max_in_flight=50, max_in_flight_per_key=2)
    results = burst(url, ["sk-A"] * 8 + ["sk-B"] * 2)
    outcome = Counter((key, isinstance(r, Exception)) for key, r in results)
    assert outcome[("sk-B", False)] == 2  # B is within its own limit: all served
    assert outcome[("sk-A", False)] >= 2 and outcome[("sk-A", True)] >= 1
    for key, r in results:
        if isinstance(r, Exception):
            assert key == "sk-A"
            assert_429_shape(r, "key_concurrency_limit")
    assert fake_upstream.max_in_flight <= 4


def test_health_is_never_limited(limited):
    url = limited(max_in_flight=1)
    assert httpx.get(f"{url}/healthz").status_code == 200
