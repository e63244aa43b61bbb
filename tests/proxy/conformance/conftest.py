"""Fixtures of the upstream conformance suite: one private CA, nginx and tinyproxy per
session (tests/proxy/conformance/servers.py); a missing server fails under CI=true and
skips elsewhere, as the deploy tests do."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator

import httpx
import openai
import pytest

from proxy.embedded import free_port
from proxy.logs import JsonFormatter
from tests.fake_upstream import FakeUpstream
from tests.proxy.conformance.servers import Nginx, PrivateCA, Tinyproxy, which


def require(tool: str) -> None:
    if which(tool):
        return
    reason = f"{tool} not found: run scripts/install_test_servers.sh (make test does)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def private_ca(tmp_path_factory) -> PrivateCA:
    if shutil.which("openssl") is None:
        require("openssl")
    return PrivateCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def live_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def nginx(tmp_path_factory, private_ca, _fake_server: FakeUpstream, live_port) -> Iterator[Nginx]:
    require("nginx")
    _fake_server.reset()  # the default script, whatever an earlier test left scripted
    ask = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}],
           "logprobs": True, "top_logprobs": 20}
    json_answer = httpx.post(f"{_fake_server.api_base}/chat/completions", json=ask).content
    sse_answer = httpx.post(f"{_fake_server.api_base}/chat/completions",
                            json={**ask, "stream": True}).content
    with Nginx(tmp_path_factory.mktemp("nginx"), private_ca, _fake_server.port, live_port,
               json_answer, sse_answer) as server:
        yield server


@pytest.fixture(scope="session")
def tinyproxy(tmp_path_factory, nginx) -> Iterator[Tinyproxy]:
    require("tinyproxy")
    with Tinyproxy(tmp_path_factory.mktemp("tinyproxy")) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch) -> None:
    """Each test starts from an environment without proxy variables."""
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def sdk():
    """The official client for a gateway URL; it ignores proxy variables (they are for
    the gateway's upstream hop, not for this loopback call)."""
    clients = []

    def make(gateway: str, **kwargs) -> openai.OpenAI:
        http = httpx.Client(trust_env=False)
        clients.append(http)
        return openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0,
                             http_client=http, **kwargs)

    yield make
    for http in clients:
        http.close()


class JsonLines(logging.Handler):
    """Formats each record when it is emitted (in the gateway's context, so the request
    id is there) and keeps the parsed JSON lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def upstream_log() -> Iterator[JsonLines]:
    """The JSON lines hallgate's loggers write at info and above during a test."""
    handler = JsonLines()
    logger = logging.getLogger("hallgate")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)
