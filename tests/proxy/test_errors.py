"""Every error path answers in the OpenAI error shape with the right status."""

from __future__ import annotations

import httpx
import openai
import pytest

from proxy.config import RetrySettings
from tests.conftest import fake_settings

MESSAGES = [{"role": "user", "content": "hi"}]


def assert_openai_error(resp: httpx.Response, status: int, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize("body, param", [
    ({"model": "fake"}, "messages"),
    ({"model": "fake", "messages": []}, "messages"),
    ({"model": "fake", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "fake", "messages": MESSAGES, "n": "3"}, "n"),
    ({"model": "fake", "messages": MESSAGES, "n": 0}, "n"),
    ({"model": "fake", "messages": MESSAGES, "n": 1000}, "n"),
    ({"model": "fake", "messages": MESSAGES, "top_logprobs": 21}, "top_logprobs"),
    ({"model": "fake", "messages": MESSAGES, "temperature": "hot"}, "temperature"),
    ({"model": "fake", "messages": "hello"}, "messages"),
    ({"messages": MESSAGES}, "model"),
    ({"model": "fake", "messages": [{"content": "x"}]}, "messages[0].role"),
    ({"model": "fake", "messages": MESSAGES, "n": True}, "n"),
    ({"model": "", "messages": MESSAGES}, "model"),
    ({"model": "fake", "messages": MESSAGES, "stream_options": {"include_usage": 1}},
     "stream_options.include_usage"),
], ids=["missing_messages", "empty_messages", "bad_role", "n_string", "n_zero", "n_huge",
        "top_logprobs_range", "temperature_type", "messages_type", "missing_model",
        "missing_role", "n_bool", "empty_model", "include_usage_type"])
def test_invalid_requests_are_400_naming_the_field(gateway, body, param):
    resp = httpx.post(f"{gateway}/v1/chat/completions", json=body)
    error = assert_openai_error(resp, 400, param)
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b"null"],
                         ids=["malformed", "empty", "array", "null"])
def test_malformed_bodies_are_400(gateway, raw):
    resp = httpx.post(f"{gateway}/v1/chat/completions", content=raw,
                      headers={"content-type": "application/json"})
    assert_openai_error(resp, 400)


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert exc.value.body["code"] == "model_not_found"


def test_unknown_route_is_404_in_openai_shape(gateway):
    assert_openai_error(httpx.get(f"{gateway}/v1/nothing-here"), 404)


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
def test_body_over_the_limit_is_413(fake_upstream, start_gateway, chunked):
    url = start_gateway(fake_settings(fake_upstream, max_body_bytes=1000))
    big = b'{"model": "fake", "messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}'
    content = iter([big[:2000], big[2000:]]) if chunked else big
    resp = httpx.post(f"{url}/v1/chat/completions", content=content,
                      headers={"content-type": "application/json"})
    assert_openai_error(resp, 413)


def test_429_with_retry_after_is_retried(client, fake_upstream):
    fake_upstream.fail_next("429", retry_after=0.2)
    resp = client.chat.completions.create(model="fake", messages=MESSAGES)
    assert resp.choices[0].message.content
    assert len(fake_upstream.requests) == 2


def test_500_is_retried_then_succeeds(client, fake_upstream):
    fake_upstream.fail_next("500", times=2)
    assert client.chat.completions.create(model="fake", messages=MESSAGES).choices
    assert len(fake_upstream.requests) == 3


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_persistent_500_gives_up_as_502(client, fake_upstream, stream):
    fake_upstream.fail_next("500", times=5)
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="fake", messages=MESSAGES, stream=stream)
    assert exc.value.status_code == 502
    assert exc.value.body["type"] == "upstream_error"
    assert len(fake_upstream.requests) == 3  # max_attempts


def test_upstream_400_is_not_retried_and_passed_on(client, fake_upstream):
    fake_upstream.fail_next("400")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="fake", messages=MESSAGES)
    assert len(fake_upstream.requests) == 1


def test_malformed_upstream_json_is_502(client, fake_upstream):
    fake_upstream.fail_next("malformed")
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="fake", messages=MESSAGES)
    assert exc.value.status_code == 502
    assert exc.value.body["code"] == "upstream_bad_response"


def test_slow_upstream_past_the_deadline_is_504(fake_upstream, start_gateway):
    retry = RetrySettings(max_attempts=5, deadline_s=1.0, backoff_initial_s=0.01)
    url = start_gateway(fake_settings(fake_upstream, retry=retry))
    fake_upstream.script.latency_s = 3.0
    resp = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                      json={"model": "fake", "messages": MESSAGES})
    error = assert_openai_error(resp, 504)
    assert error["type"] == "upstream_timeout"


def test_connection_refused_is_502(fake_upstream, start_gateway):
    settings = fake_settings(fake_upstream)
    settings.models[0].api_base = "http://127.0.0.1:9/v1"  # nothing listens on port 9
    url = start_gateway(settings)
    resp = httpx.post(f"{url}/v1/chat/completions", json={"model": "fake",
                                                          "messages": MESSAGES})
    assert_openai_error(resp, 502)


def test_stream_dropped_midway_ends_with_an_error_event(client, fake_upstream):
    fake_upstream.fail_next("drop")
    fake_upstream.script.text = "one two three four five six"
    with pytest.raises(openai.APIError) as exc:
        for _ in client.chat.completions.create(model="fake", messages=MESSAGES, stream=True):
            pass
    assert "dropped" in str(exc.value.message)
