"""The lean path (provider openai, proxy/upstream/http1.py) against real servers: nginx
with a private CA, tinyproxy as a CONNECT proxy with credentials, redirects, HTML pages,
gzip, chunked streams, a short keep-alive, and an upstream killed or frozen mid-stream.

Each case drives a real gateway with the official SDK, JSON and streaming where both
apply; a failure must name what happened and leave one log line for the failed call.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import openai
import pytest

from proxy.config import RetrySettings, Settings, UpstreamModel
from tests.proxy.conformance.servers import LiveUpstream

TEXT = "Paris is the capital of France."
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
MODES = pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])


def gateway_settings(api_base: str, **model: object) -> Settings:
    upstream = UpstreamModel(name="m", provider="openai", model="fake-model",
                             api_base=api_base, **{"timeout_s": 2.0, **model})
    return Settings(models=[upstream], retry=RetrySettings(
        max_attempts=2, deadline_s=10.0, backoff_initial_s=0.01, backoff_max_s=0.05))


def answer(client: openai.OpenAI, stream: bool) -> str:
    if not stream:
        return client.chat.completions.create(model="m", messages=MESSAGES
                                              ).choices[0].message.content
    chunks = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def failure(client: openai.OpenAI, stream: bool, request_id: str = "req-conf") -> openai.APIError:
    """The error the SDK raises for a failed request: a status error before the first
    chunk, or the error event that ends a started stream."""
    headers = {"x-request-id": request_id}
    with pytest.raises(openai.APIError) as caught:
        if stream:
            for _ in client.chat.completions.create(model="m", messages=MESSAGES,
                                                    stream=True, extra_headers=headers):
                pass
        else:
            client.chat.completions.create(model="m", messages=MESSAGES,
                                           extra_headers=headers)
    return caught.value


def one_failure_logged(upstream_log, request_id: str = "req-conf") -> dict:
    """The one line (of any hallgate logger) that tells this request's upstream failure."""
    lines = [line for line in upstream_log.lines if line.get("request_id") == request_id]
    assert len(lines) == 1, upstream_log.lines
    assert "model=m" in lines[0]["message"] and lines[0]["level"] in ("warning", "info")
    return lines[0]


# --- TLS with a private CA ---------------------------------------------------------------

@MODES
def test_https_with_the_private_ca_as_ca_file(nginx, private_ca, start_gateway, sdk, stream):
    url = start_gateway(gateway_settings(nginx.url("/v1", "https"),
                                         ca_file=str(private_ca.ca)))
    assert answer(sdk(url), stream) == TEXT


def test_https_without_the_ca_fails_naming_the_certificate_and_logs_it(
        nginx, start_gateway, sdk, upstream_log):
    url = start_gateway(gateway_settings(nginx.url("/v1", "https")))
    error = failure(sdk(url), stream=False)
    assert error.status_code == 502 and "CERTIFICATE_VERIFY_FAILED" in error.message
    line = one_failure_logged(upstream_log)
    assert f"upstream=127.0.0.1:{nginx.https_port}" in line["message"]
    assert "CERTIFICATE_VERIFY_FAILED" in line["message"]


def test_verify_false_connects_and_warns_loudly(nginx, start_gateway, sdk, caplog):
    with caplog.at_level("WARNING", logger="hallgate.upstream"):
        url = start_gateway(gateway_settings(nginx.url("/v1", "https"), verify=False))
    assert answer(sdk(url), stream=False) == TEXT
    assert any("TLS VERIFICATION IS OFF for model 'm'" in r.getMessage()
               for r in caplog.records)


def test_a_client_certificate_opens_a_mutual_tls_upstream(nginx, private_ca, start_gateway,
                                                          sdk):
    api_base = f"https://127.0.0.1:{nginx.mtls_port}/v1"
    url = start_gateway(gateway_settings(api_base, ca_file=str(private_ca.ca),
                                         client_cert=str(private_ca.client_cert),
                                         client_key=str(private_ca.client_key)))
    assert answer(sdk(url), stream=True) == TEXT
    bare = start_gateway(gateway_settings(api_base, ca_file=str(private_ca.ca)))
    assert failure(sdk(bare), stream=False).status_code == 400  # nginx: no certificate


# --- a forward proxy --------------------------------------------------------------------

@MODES
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_the_proxy_from_the_environment_is_used(nginx, tinyproxy, private_ca, start_gateway,
                                                sdk, monkeypatch, scheme, stream):
    """/proxied-only/ answers only connections from the proxy: a direct one gets 403."""
    monkeypatch.setenv(f"{scheme.upper()}_PROXY", tinyproxy.url())
    url = start_gateway(gateway_settings(nginx.url("/proxied-only/v1", scheme),
                                         ca_file=str(private_ca.ca)))
    assert answer(sdk(url), stream) == TEXT
    assert "CONNECT" in tinyproxy.log() or scheme == "http"


@pytest.mark.parametrize("name", ["all_proxy", "https_proxy", "HTTPS_PROXY"])
def test_proxy_variables_in_either_case_and_all_proxy(nginx, tinyproxy, private_ca,
                                                      start_gateway, sdk, monkeypatch, name):
    monkeypatch.setenv(name, tinyproxy.url())
    url = start_gateway(gateway_settings(nginx.url("/proxied-only/v1", "https"),
                                         ca_file=str(private_ca.ca)))
    assert answer(sdk(url), stream=False) == TEXT


def test_no_proxy_bypasses_the_proxy(nginx, start_gateway, sdk, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    url = start_gateway(gateway_settings(nginx.url("/v1")))
    assert answer(sdk(url), stream=False) == TEXT


def test_the_model_proxy_setting_overrides_the_environment(nginx, tinyproxy, private_ca,
                                                           start_gateway, sdk, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    through = start_gateway(gateway_settings(nginx.url("/proxied-only/v1", "https"),
                                             ca_file=str(private_ca.ca),
                                             proxy=tinyproxy.url()))
    assert answer(sdk(through), stream=True) == TEXT
    direct = start_gateway(gateway_settings(nginx.url("/v1", "https"),
                                            ca_file=str(private_ca.ca), proxy="none"))
    assert answer(sdk(direct), stream=False) == TEXT


def test_wrong_proxy_credentials_fail_naming_the_proxy_answer(nginx, tinyproxy, private_ca,
                                                              start_gateway, sdk, upstream_log):
    url = start_gateway(gateway_settings(nginx.url("/proxied-only/v1", "https"),
                                         ca_file=str(private_ca.ca),
                                         proxy=tinyproxy.url(credentials=False)))
    error = failure(sdk(url), stream=False)
    assert error.status_code == 502 and "refused CONNECT" in error.message
    assert "407" in error.message
    one_failure_logged(upstream_log)


def test_without_the_proxy_the_403_page_is_named(nginx, start_gateway, sdk, upstream_log):
    url = start_gateway(gateway_settings(nginx.url("/proxied-only/v1")))
    error = failure(sdk(url), stream=False)
    assert error.status_code == 403 and "403 Forbidden" in error.message
    line = one_failure_logged(upstream_log)
    assert "status=403" in line["message"] and line["level"] == "info"


# --- redirects ----------------------------------------------------------------------------

@MODES
@pytest.mark.parametrize("path", ["/r307/v1", "/r308/v1"])
def test_307_and_308_are_followed(nginx, start_gateway, sdk, path, stream):
    url = start_gateway(gateway_settings(nginx.url(path)))
    assert answer(sdk(url), stream) == TEXT


@MODES
@pytest.mark.parametrize(("path", "reason"), [
    ("/r301/v1", "HTTP 301 redirecting to http://127.0.0.1:{port}/v1/chat/completions"),
    ("/to-https/v1", "changes the scheme"),
    ("/loop/v1", "more than 5 redirects"),
])
def test_other_redirects_are_502_naming_status_and_location(nginx, start_gateway, sdk,
                                                            upstream_log, path, reason, stream):
    url = start_gateway(gateway_settings(nginx.url(path)))
    error = failure(sdk(url), stream)
    assert error.status_code == 502
    assert reason.format(port=nginx.http_port) in error.message, error.message
    assert error.code == "upstream_redirect"
    one_failure_logged(upstream_log)


# --- bodies that are not what was asked ------------------------------------------------

@MODES
def test_an_html_answer_is_named_with_its_content_type(nginx, start_gateway, sdk,
                                                       upstream_log, stream):
    url = start_gateway(gateway_settings(nginx.url("/html/v1")))
    error = failure(sdk(url), stream)
    assert error.status_code == 502 and error.code == "upstream_bad_response"
    assert "text/html" in error.message and "Sign in" in error.message
    assert "without sending anything" not in error.message
    one_failure_logged(upstream_log)


@MODES
def test_gzip_answers_are_decoded(nginx, start_gateway, sdk, stream):
    url = start_gateway(gateway_settings(nginx.url(f"/gzip-{'sse' if stream else 'json'}/v1")))
    assert answer(sdk(url), stream) == TEXT


# --- connections and streams -------------------------------------------------------------

def test_short_keep_alive_and_closing_every_fifth_exchange(nginx, start_gateway, sdk):
    """nginx drops idle connections after 300 ms and closes every fifth exchange; requests
    spaced around that keep finding stale pooled connections."""
    client = sdk(start_gateway(gateway_settings(nginx.url("/v1"))))
    for i in range(12):
        assert answer(client, stream=i % 2 == 1) == TEXT
        time.sleep((0.1, 0.28, 0.32, 0.5)[i % 4])


def test_a_chunked_stream_arrives_token_by_token(nginx, live_port, start_gateway, sdk):
    with LiveUpstream(live_port, token_delay_ms=5):
        url = start_gateway(gateway_settings(nginx.url("/live/v1")))
        chunks = sdk(url).chat.completions.create(model="m", messages=MESSAGES, stream=True)
        words = [c.choices[0].delta.content for c in chunks if c.choices
                 and c.choices[0].delta.content]
    assert words[:3] == ["word0", " word1", " word2"] and len(words) == 200


def broken_stream(url: str, sdk, live: LiveUpstream, sig: signal.Signals) -> openai.APIError:
    """Stream from a gateway whose upstream gets ``sig`` 0.5 s into its answer (about ten
    words in): the gateway may be streaming to the client or still holding the answer."""
    timer = threading.Timer(0.5, os.kill, (live.process.pid, sig))
    timer.start()
    try:
        return failure(sdk(url), stream=True)
    finally:
        timer.cancel()


def test_an_upstream_killed_mid_stream_ends_the_stream_with_an_error(
        nginx, live_port, start_gateway, sdk, upstream_log):
    with LiveUpstream(live_port) as live:
        url = start_gateway(gateway_settings(nginx.url("/live/v1")))
        error = broken_stream(url, sdk, live, signal.SIGKILL)
    assert "dropped the stream" in error.message, error.message
    one_failure_logged(upstream_log)


def test_an_upstream_frozen_mid_stream_is_a_timeout_naming_the_seconds(
        nginx, live_port, start_gateway, sdk, upstream_log):
    with LiveUpstream(live_port) as live:
        url = start_gateway(gateway_settings(nginx.url("/live/v1"), timeout_s=1.0))
        error = broken_stream(url, sdk, live, signal.SIGSTOP)
    assert "stalled" in error.message and "1s" in error.message, error.message
    assert error.code == "upstream_stream_timeout"
    one_failure_logged(upstream_log)
