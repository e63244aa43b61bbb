"""A non-UTF-8 x-request-id (bytes 0xFF 0xFE) gave a 500; now such an id is
replaced by a fresh one, and a good id is still echoed."""

from __future__ import annotations

import re

import httpx
import pytest

BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"caf\xc3\xa9", b"a\tb"],
                         ids=["not_utf8", "not_ascii", "tab"])
def test_bad_request_ids_are_replaced(gateway, raw):
    resp = httpx.post(f"{gateway}/v1/chat/completions", json=BODY,
                      headers={"x-request-id": raw})
    assert resp.status_code == 200, resp.text
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])


def test_a_good_request_id_is_echoed_and_cut_to_128(gateway):
    resp = httpx.get(f"{gateway}/healthz", headers={"x-request-id": "req-42"})
    assert resp.headers["x-request-id"] == "req-42"
    resp = httpx.get(f"{gateway}/healthz", headers={"x-request-id": "x" * 300})
    assert resp.headers["x-request-id"] == "x" * 128
