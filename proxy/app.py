"""Assembles the gateway: ``create_app(settings)`` builds everything on ``app.state``.

No import-time singletons: settings come in, services are created in the lifespan
(the HTTP client, the embedded model when no upstream is configured, the upstreams, the
gates), and torn down in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from threadpoolctl import threadpool_limits

from detectors.semantic.embedding import EmbeddingStore, use_store
from policies import PolicyStore
from proxy.audit import AuditLog
from proxy.auth import ApiKeyMiddleware, load_keys
from proxy.calibrations import bundle_store
from proxy.chat.router import CHAT_PATH_SUFFIX, ChatEndpoint
from proxy.chat.service import ChatService
from proxy.config import Settings, UpstreamModel
from proxy.detector_set import DetectorSet
from proxy.embedded import EmbeddedModel, embedded_upstream_config
from proxy.errors import install_error_handlers
from proxy.feedback import router as feedback_router
from proxy.gatekeeper import PolicyGatekeeper
from proxy.guardrail.router import router as guardrail_router
from proxy.limits import ConcurrencyLimitMiddleware, InFlightLimits
from proxy.metrics import Metrics, MetricsMiddleware
from proxy.middleware import BodyLimitMiddleware, RequestIdMiddleware
from proxy.openapi import install_openapi
from proxy.registry import UpstreamRegistry
from proxy.responses.router import router as responses_router
from proxy.tracing import build_tracing
from proxy.upstream import Upstream, build_upstream
from proxy.upstream.capabilities import LogprobsCapability, rejection_counter
from proxy.upstream.http1 import HttpClient
from proxy.upstream.instrumented import InstrumentedUpstream
from proxy.upstream.recording import Recording, RecordingUpstream, ReplayUpstream
from proxy.upstream.usage import PromptTokenCounter, StreamUsage

log = logging.getLogger("hallgate")


@contextlib.asynccontextmanager
async def policy_gatekeeper(settings: Settings, registry: UpstreamRegistry, metrics: Metrics,
                            audit: AuditLog | None, plugins: Mapping[str, Any] | None = None,
                            ) -> AsyncIterator[PolicyGatekeeper]:
    """Load detectors and the policy file (a bad file stops the start with file, line and
    key); reload it on change and on SIGHUP, keeping the old policy when a reload fails."""
    torch.set_num_threads(settings.torch_threads)
    detectors = DetectorSet.load(plugins)
    # every BLAS loaded by now too (numpy's for the embedding models, and scipy's, which
    # loads with the detectors: limited before them, it kept one thread per core): a
    # thread pool that spins for a small product costs 10x the product on a busy machine
    threadpool_limits(settings.torch_threads, user_api="blas")
    store = PolicyStore(settings.resolved_policy_file(),
                        available_detectors=detectors.available())
    log.info("policy %s loaded; detectors available: %s", store.path, detectors.available())
    watcher = asyncio.create_task(store.watch(), name="policy-watch")
    bundles = bundle_store(settings, registry.names(), metrics)
    bundle_watcher = asyncio.create_task(bundles.watch(), name="calibration-watch")
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, store.reload)
    except (RuntimeError, ValueError, NotImplementedError):  # not the main thread (tests)
        log.debug("SIGHUP reload unavailable in this thread; file watching still runs")
    try:
        yield PolicyGatekeeper(store, detectors, registry, metrics, audit, bundles)
    finally:
        for task in (watcher, bundle_watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            loop.remove_signal_handler(signal.SIGHUP)


def build_upstreams(settings: Settings, configs: list[UpstreamModel],
                    client: HttpClient, rejected,
                    stream_usage: dict[str, PromptTokenCounter] | None = None,
                    ) -> list[Upstream]:
    """The transports for ``configs`` (each learning whether its model takes logprobs);
    recording or replaying when the settings say so. A recording wraps the capability
    layer, so it keeps the request as the gateway asked it and the answer it finally got:
    a replay needs no retry without logprobs. ``stream_usage``: models whose streams carry
    no usage, with the counter of their prompt tokens (the embedded model)."""
    if settings.replay_dir:
        recording = Recording(settings.replay_dir)
        return [ReplayUpstream(c, recording) for c in recording.models()]
    upstreams: list[Upstream] = [
        LogprobsCapability(build_upstream(c, settings.retry, client), rejected)
        for c in configs]
    counters = stream_usage or {}
    upstreams = [StreamUsage(u, counters[u.config.name].count)
                 if u.config.name in counters else u for u in upstreams]
    if settings.record_dir:
        recording = Recording(settings.record_dir, settings.record_part)
        recording.start(configs)
        upstreams = [RecordingUpstream(u, recording) for u in upstreams]
    return upstreams


@contextlib.contextmanager
def embedding_store(path: str):
    """The semantic gate's embeddings read from and saved to ``path`` for this app's life."""
    store = EmbeddingStore.open(path)
    use_store(store)
    try:
        yield store
    finally:
        use_store(None)
        store.save()


class HallgateApp(FastAPI):
    """FastAPI for every path but chat completions, the request every client pays for:
    those go through ``chat_stack`` (the same middleware chain, ending in the plain-ASGI
    :class:`ChatEndpoint`). Measured in bench/overhead.py."""

    chat_stack: Any = None

    async def __call__(self, scope, receive, send) -> None:
        if (self.chat_stack is not None and scope["type"] == "http"
                and scope["method"] == "POST" and scope["path"].endswith(CHAT_PATH_SUFFIX)):
            scope["app"] = self
            await self.chat_stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, plugins: Mapping[str, Any] | None = None,
               span_exporter=None, freeze_heap: bool = False) -> FastAPI:
    """The gateway. ``plugins`` reuses already loaded detector plug-ins by name (a model's
    weights are read-only, so apps may share one); ``span_exporter`` turns tracing on with
    that OpenTelemetry exporter (tests); ``freeze_heap`` (the gateway's own process,
    ``hallgate serve``): once started, move every object alive into the collector's
    permanent generation (``gc.freeze()``), so that the full collections that the
    requests' and the store's short-lived objects trigger no longer walk the heap of
    torch, HALT and the libraries loaded at start."""
    settings = settings or Settings()
    tracing = build_tracing(settings.tracing, span_exporter)  # None when tracing is off

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if settings.embedding_cache:  # saved again at shutdown
                stack.enter_context(embedding_store(settings.embedding_cache))
            pool = settings.http_client
            client = await stack.enter_async_context(HttpClient(
                pool.connect_timeout_s, max_connections_per_host=pool.max_connections_per_host,
                max_idle_per_host=pool.max_idle_per_host,
                on_unsolicited=app.state.metrics.upstream_unsolicited.inc))
            configs = list(settings.models)
            embedded: list[EmbeddedModel] = []
            stream_usage = {}
            for name in settings.embedded.models if settings.use_embedded() else ():
                model = EmbeddedModel(settings.embedded, name)
                await model.start()
                stack.push_async_callback(model.stop)
                embedded.append(model)
                configs.append(config := embedded_upstream_config(model))
                # llama.cpp's streams carry no usage: the gateway counts it (same GGUF)
                stream_usage[config.name] = PromptTokenCounter(model.gguf_path(),
                                                               model.spec.chat_format)
            rejected = rejection_counter(app.state.metrics.registry)
            upstreams = [InstrumentedUpstream(u, app.state.metrics) for u in
                         build_upstreams(settings, configs, client, rejected, stream_usage)]
            for upstream in upstreams:  # closed before the client they share
                stack.push_async_callback(upstream.aclose)
            if tracing is not None:
                upstreams = tracing.wrap_upstreams(upstreams)
            app.state.embedded = embedded
            app.state.registry = registry = UpstreamRegistry(upstreams)
            keeper = await stack.enter_async_context(
                policy_gatekeeper(settings, registry, app.state.metrics, app.state.audit,
                                  plugins))
            if settings.store.enabled:  # judged exchanges sampled into a database
                from proxy.store.writer import open_store  # SQLAlchemy only when it is on

                keeper.exchanges = app.state.exchanges = await stack.enter_async_context(
                    open_store(settings, app.state.metrics.registry, lambda: keeper.store.policy))
            app.state.chat = ChatService(registry, keeper, settings.max_n)
            if freeze_heap:
                gc.collect()
                gc.freeze()
            app.state.ready = True
            log.info("hallgate ready: models %s", app.state.registry.names())
            yield
            app.state.ready = False

    app = HallgateApp(title="hallgate", version="0.1.0", lifespan=lifespan,
                      docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.ready = False
    app.state.exchanges = None
    app.state.metrics = Metrics()
    app.state.audit = AuditLog(settings.audit.path, settings.audit.include_prompt) \
        if settings.audit.path else None
    install_error_handlers(app)
    app.include_router(responses_router)
    app.include_router(guardrail_router)
    app.include_router(feedback_router)
    install_openapi(app)
    _add_service_routes(app)
    # One middleware chain, innermost first: body limit, in-flight limits, auth, metrics,
    # (tracing), request id. FastAPI runs it before its routes; chat completions run the
    # same chain straight into ChatEndpoint, without Starlette's routing and FastAPI's own
    # middleware. The limits sit inside auth (they need the key's name) and share one
    # state between the two chains.
    limits = InFlightLimits(settings.limits, app.state.metrics.registry)
    chain: list[tuple[type, dict]] = [
        (BodyLimitMiddleware, {"max_bytes": settings.max_body_bytes}),
        (ConcurrencyLimitMiddleware, {"limits": limits}),
        (ApiKeyMiddleware, {"keys": load_keys(settings.api_keys, dict(os.environ))}),
        (MetricsMiddleware, {"metrics": app.state.metrics}),
    ]
    if tracing is not None:  # inside the request id, so the span and the logs share it
        chain.append((tracing.middleware, {}))
    chain.append((RequestIdMiddleware, {}))
    chat: object = ChatEndpoint()
    for cls, options in chain:
        app.add_middleware(cls, **options)
        chat = cls(chat, **options)
    app.chat_stack = chat
    return app


def _add_service_routes(app: FastAPI) -> None:
    @app.get("/v1/models")
    @app.get("/{route_prefix:path}/v1/models")
    async def list_models(request: Request) -> dict:
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "hallgate"}
            for name in request.app.state.registry.names()]}

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        body, content_type = request.app.state.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness: the process serves HTTP. Never calls the upstream."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: started (the store, when on, opened and migrated), detectors
        loaded, every embedded model alive. The store's later state is reported, not
        judged: a failing database drops sampled exchanges, never requests."""
        state = request.app.state
        embedded = getattr(state, "embedded", None) or []
        ready = state.ready and all(model.alive() for model in embedded)
        body: dict = {"status": "ready" if ready else "starting"}
        if state.exchanges is not None:
            body["store"] = state.exchanges.health()
        return JSONResponse(body, status_code=200 if ready else 503)
