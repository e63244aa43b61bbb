"""An upstream 429's Retry-After is honoured up to the deadline (it was cut
to the backoff cap), and when the gateway gives up the client gets 429 with the
upstream's Retry-After (it got a 502 without one), so the SDKs' own retries work."""

from __future__ import annotations

import time

import openai
import pytest

MESSAGES = [{"role": "user", "content": "hi"}]


def test_retry_after_above_the_backoff_cap_is_honoured(client, fake_upstream):
    # fake_settings: backoff cap 0.5 s, deadline 5 s
    fake_upstream.fail_next("429", retry_after=1.2)
    start = time.monotonic()
    resp = client.chat.completions.create(model="fake", messages=MESSAGES)
    assert resp.choices[0].message.content
    assert len(fake_upstream.requests) == 2 and time.monotonic() - start >= 1.2


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_retry_after_past_the_deadline_is_passed_on_as_429(client, fake_upstream, stream):
    fake_upstream.fail_next("429", times=3, retry_after=30)
    start = time.monotonic()
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="fake", messages=MESSAGES, stream=stream)
    assert time.monotonic() - start < 2.0  # no pointless early retry, no waiting 30 s
    assert len(fake_upstream.requests) == 1
    assert exc.value.status_code == 429
    assert exc.value.response.headers["retry-after"] == "30"
    assert exc.value.body["type"] == "rate_limit_error"
    assert exc.value.body["code"] == "upstream_rate_limited"


def test_persistent_429_ends_as_429_with_retry_after(client, fake_upstream):
    fake_upstream.fail_next("429", times=3, retry_after=0.1)
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="fake", messages=MESSAGES)
    assert len(fake_upstream.requests) == 3  # max_attempts
    assert exc.value.response.headers["retry-after"] == "1"  # whole seconds, at least 1
