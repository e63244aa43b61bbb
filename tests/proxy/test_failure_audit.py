"""Requests that fail (502, 504, the upstream's 4xx or 429) leave an audit
record with their error code; before, only metrics counted them."""

from __future__ import annotations

import json

import openai
import pytest

from proxy.config import RetrySettings
from tests.conftest import fake_settings

SECRET = "Quuxberry"
MESSAGES = [{"role": "user", "content": f"Tell me about {SECRET}."}]


@pytest.fixture
def audited(fake_upstream, start_gateway, tmp_path):
    audit = tmp_path / "audit.jsonl"
    retry = RetrySettings(max_attempts=2, deadline_s=1.0, backoff_initial_s=0.01,
                          backoff_max_s=0.05)
    url = start_gateway(fake_settings(fake_upstream, retry=retry,
                                      audit={"path": str(audit)}))
    # the default route (HALT only): no gate calls compete for the injected faults
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=30)
    return client, audit


@pytest.mark.parametrize(("fault", "kw", "status", "code"), [
    ("500", {"times": 2}, 502, "upstream_500"),
    ("slow", {"times": 2, "delay_s": 3.0}, 504, None),
    ("400", {}, 400, "upstream_400"),
    ("429", {"times": 2, "retry_after": 60}, 429, "upstream_rate_limited"),
], ids=["502", "504", "upstream_400", "upstream_429"])
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_failed_requests_are_audited_with_their_error(audited, fake_upstream, fault, kw,
                                                      status, code, stream):
    client, audit = audited
    fake_upstream.fail_next(fault, **kw)
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="fake", messages=MESSAGES, stream=stream)
    assert exc.value.status_code == status
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    failures = [r for r in records if r["decision"] == "error"]
    assert len(failures) == 1, records
    rec = failures[0]
    assert rec["status"] == status and rec["error"]["code"] == code
    assert rec["route"] == "default" and rec["model"] == "fake"
    assert len(rec["prompt_sha256"]) == 64 and rec["request_id"]
    assert SECRET not in audit.read_text()  # include_prompt is off: no error message either


def test_a_successful_request_leaves_one_record(audited):
    client, audit = audited
    client.chat.completions.create(model="fake", messages=MESSAGES)
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [r["decision"] for r in records] != ["error"] and len(records) == 1
