"""The same real servers against the litellm path (provider litellm, ``openai/`` models)
where its cases apply. The litellm path has no per-model proxy or TLS settings (the config
refuses them); it reads HTTPS_PROXY / NO_PROXY and SSL_CERT_FILE from the environment.
Where it behaves differently from the lean path, the test pins what it does, and
docs/OPERATIONS.md ("The upstream hop in a corporate network") lists the differences.
"""

from __future__ import annotations

import signal

import pytest

from proxy.config import RetrySettings, Settings, UpstreamModel
from tests.proxy.conformance.servers import LiveUpstream
from tests.proxy.conformance.test_lean_path import MODES, TEXT, answer, broken_stream, failure


@pytest.fixture
def litellm_gateway(start_gateway, monkeypatch):
    monkeypatch.setenv("HALLGATE_TEST_KEY", "sk-unused")  # the openai SDK wants a key

    def start(api_base: str, timeout_s: float = 5.0, **env: str) -> str:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        upstream = UpstreamModel(name="m", provider="litellm", model="openai/fake-model",
                                 api_base=api_base, api_key_env="HALLGATE_TEST_KEY",
                                 timeout_s=timeout_s)
        return start_gateway(Settings(models=[upstream], retry=RetrySettings(
            max_attempts=1, deadline_s=20.0, backoff_initial_s=0.01)))

    return start


@MODES
def test_a_private_ca_through_ssl_cert_file(nginx, private_ca, litellm_gateway, sdk, stream):
    url = litellm_gateway(nginx.url("/v1", "https"), SSL_CERT_FILE=str(private_ca.ca))
    assert answer(sdk(url), stream) == TEXT


@MODES
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_the_proxy_from_the_environment(nginx, tinyproxy, private_ca, litellm_gateway, sdk,
                                        scheme, stream):
    url = litellm_gateway(nginx.url("/proxied-only/v1", scheme),
                          SSL_CERT_FILE=str(private_ca.ca),
                          **{f"{scheme.upper()}_PROXY": tinyproxy.url()})
    assert answer(sdk(url), stream) == TEXT


def test_no_proxy(nginx, litellm_gateway, sdk):
    url = litellm_gateway(nginx.url("/v1"), HTTP_PROXY="http://127.0.0.1:9",
                          NO_PROXY="127.0.0.1")
    assert answer(sdk(url), stream=False) == TEXT


@MODES
def test_307_is_followed(nginx, litellm_gateway, sdk, stream):
    assert answer(sdk(litellm_gateway(nginx.url("/r307/v1"))), stream) == TEXT


@MODES
def test_gzip(nginx, litellm_gateway, sdk, stream):
    url = litellm_gateway(nginx.url(f"/gzip-{'sse' if stream else 'json'}/v1"))
    assert answer(sdk(url), stream) == TEXT


# --- where it differs -----------------------------------------------------------------------

@MODES
def test_differs_a_301_is_followed_as_a_get_and_the_405_passed_on(nginx, litellm_gateway,
                                                                    sdk, stream):
    """httpx follows 301 by changing the POST into a GET; the client sees the 405 the GET
    got, not the redirect (the lean path: 502 naming 301 and the Location)."""
    error = failure(sdk(litellm_gateway(nginx.url("/r301/v1"))), stream)
    assert error.status_code == 405 and "301" not in error.message


def test_differs_a_redirect_to_https_is_followed(nginx, litellm_gateway, sdk):
    """Followed to nginx's https port, where the system store does not know the private CA:
    a connection error that names neither the redirect nor the certificate."""
    error = failure(sdk(litellm_gateway(nginx.url("/to-https/v1"))), stream=False)
    assert error.status_code == 502 and "Connection error" in error.message


def test_an_html_answer_is_quoted(nginx, litellm_gateway, sdk):
    error = failure(sdk(litellm_gateway(nginx.url("/html/v1"))), stream=False)
    assert error.status_code == 502 and "Sign in" in error.message


def test_differs_an_html_answer_to_a_stream_is_an_empty_answer(nginx, litellm_gateway, sdk):
    """No error at all: the stream ends with no content (the lean path: 502 naming
    text/html and the page)."""
    assert answer(sdk(litellm_gateway(nginx.url("/html/v1"))), stream=True) == ""


def test_differs_a_403_page_is_not_quoted(nginx, litellm_gateway, sdk):
    error = failure(sdk(litellm_gateway(nginx.url("/proxied-only/v1"))), stream=False)
    assert error.status_code == 403 and "Forbidden" not in error.message


def test_an_upstream_killed_mid_stream(nginx, live_port, litellm_gateway, sdk):
    with LiveUpstream(live_port) as live:
        error = broken_stream(litellm_gateway(nginx.url("/live/v1")), sdk, live,
                              signal.SIGKILL)
    assert "dropped the stream" in error.message, error.message


def test_an_upstream_frozen_mid_stream(nginx, live_port, litellm_gateway, sdk):
    with LiveUpstream(live_port) as live:
        error = broken_stream(litellm_gateway(nginx.url("/live/v1"), timeout_s=1.0), sdk,
                              live, signal.SIGSTOP)
    assert "stalled" in error.message and "1s" in error.message, error.message
    assert error.code == "upstream_stream_timeout"
