"""Shared fixtures: real servers on 127.0.0.1 and the official openai client.

- ``fake_upstream``: our scripted OpenAI-compatible server (reset before every test);
- ``start_gateway(settings)``: the real gateway app under uvicorn in a thread;
- ``gateway``: a gateway whose only model, ``fake``, is the fake upstream;
- ``embedded_gateway``: a gateway on the real embedded llama.cpp model (session-wide).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import openai
import pytest
import uvicorn

from detectors.halt import HaltScorer
from detectors.halt.detector import HaltPlugin
from proxy.app import create_app
from proxy.config import RetrySettings, Settings, UpstreamModel
from proxy.server import GatewayHttpProtocol
from tests.fake_upstream import FakeUpstream


class RunningServer:
    def __init__(self, app, port: int = 0):
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="on", http=GatewayHttpProtocol)  # as `hallgate serve`
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 180.0) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def _fake_server() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().serve_in_thread()
    yield fake
    fake.stop()


@pytest.fixture
def fake_upstream(_fake_server: FakeUpstream) -> FakeUpstream:
    _fake_server.reset()
    return _fake_server


def fake_settings(fake: FakeUpstream, **overrides) -> Settings:
    """Settings with one model ``fake`` on the fake upstream and fast retries."""
    model = UpstreamModel(name="fake", provider="openai", model="fake-model",
                          api_base=fake.api_base, timeout_s=2.0,
                          supports_n=overrides.pop("supports_n", True),
                          logprobs=overrides.pop("logprobs", "auto"))
    retry = overrides.pop("retry", RetrySettings(max_attempts=3, deadline_s=5.0,
                                                 backoff_initial_s=0.01, backoff_max_s=0.5))
    return Settings(models=[model], retry=retry, **overrides)


@pytest.fixture(scope="session")
def halt_scorer() -> HaltScorer:
    """Loaded once and shared by the test gateways (the weights are read-only)."""
    return HaltScorer.load_default()


@pytest.fixture
def start_gateway(halt_scorer):
    servers: list[RunningServer] = []

    def start(settings: Settings, **app_kwargs) -> str:
        app_kwargs.setdefault("plugins", {"halt": HaltPlugin(halt_scorer)})
        server = RunningServer(create_app(settings, **app_kwargs)).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gateway(fake_upstream: FakeUpstream, start_gateway) -> str:
    return start_gateway(fake_settings(fake_upstream))


@pytest.fixture
def client(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
def embedded_gateway(halt_scorer) -> Iterator[str]:
    server = RunningServer(create_app(Settings(),
                                      plugins={"halt": HaltPlugin(halt_scorer)})).start()
    yield server.url
    server.stop()


@pytest.fixture
def embedded_client(embedded_gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{embedded_gateway}/v1", api_key="unused",
                         max_retries=0, timeout=300)
