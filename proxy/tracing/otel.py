"""The OpenTelemetry side of :mod:`proxy.tracing` (imported only when tracing is on).

An app-owned ``TracerProvider`` (no global provider is set, so two gateways in one
process keep their traces apart), the W3C trace-context propagator, and three hooks:
the ASGI middleware that opens the request span, an Upstream wrapper that opens one
GenAI client span per upstream call, and the detector spans and evaluation events that
``proxy.gatekeeper`` asks for through ``proxy.tracing.detector`` / ``record_decision``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from proxy.config import EMBEDDED_MODEL_NAMES, TracingSettings
from proxy.logs import trace_id_var
from proxy.tracing import current

API_MARK = "/v1/"  # API calls are traced; probes and /metrics would only be noise
GUARDRAIL_PATH = "/beta/litellm_basic_guardrail_api"  # LiteLLM's guardrail checks too
SCOPE_NAME = "hallgate"
EVALUATION_EVENT = "gen_ai.evaluation.result"


def otlp_exporter(env: dict[str, str] | None = None) -> SpanExporter | None:
    """The exporter ``OTEL_TRACES_EXPORTER`` names (otlp by default, console, none);
    the OTLP exporters read their endpoint, headers and timeout from ``OTEL_EXPORTER_*``."""
    env = dict(os.environ) if env is None else env
    name = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


class Tracing:
    def __init__(self, provider: TracerProvider):
        self.provider = provider
        self.tracer = provider.get_tracer(SCOPE_NAME)
        self.propagator = TraceContextTextMapPropagator()

    @classmethod
    def create(cls, settings: TracingSettings, exporter: SpanExporter | None = None,
               ) -> Tracing:
        """``exporter`` given (tests): exported synchronously; else the env's, batched.
        The service name: the settings, else ``OTEL_SERVICE_NAME``, else hallgate."""
        name = settings.service_name or os.environ.get("OTEL_SERVICE_NAME") or "hallgate"
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif (configured := otlp_exporter()) is not None:
            provider.add_span_processor(BatchSpanProcessor(configured))
        return cls(provider)

    def middleware(self, app) -> TracingMiddleware:
        return TracingMiddleware(app, self)

    def wrap_upstreams(self, upstreams: list) -> list:
        return [TracedUpstream(u, self.tracer) for u in upstreams]

    def shutdown(self) -> None:
        self.provider.shutdown()

    # --- hooks called through proxy.tracing ------------------------------------------

    def detector(self, name: str, work: Awaitable[Any], phase: str) -> Awaitable[Any]:
        async def run() -> Any:
            attributes = {"gen_ai.evaluation.name": name, "hallgate.detector": name,
                          "hallgate.detector.phase": phase}
            with self.tracer.start_as_current_span(f"hallgate.detector {name}",
                                                   attributes=attributes) as span:
                result = await work  # an exception is recorded by the span and re-raised
                risk = getattr(result, "risk", None)
                if isinstance(risk, int | float):
                    span.set_attribute("hallgate.detector.risk", float(risk))
                verdict = getattr(result, "verdict", None)
                if verdict is not None:
                    span.set_attribute("hallgate.detector.verdict", getattr(verdict, "value",
                                                                            str(verdict)))
                return result

        return run()

    def record_decision(self, decision: Any) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        for score, reason in zip(decision.detectors.values(), decision.reasons, strict=False):
            attributes = {"gen_ai.evaluation.name": score.name,
                          "gen_ai.evaluation.score.label": (score.verdict.value if score.verdict
                                                            else score.status),
                          "gen_ai.evaluation.explanation": reason,
                          "hallgate.detector.counted": score.counted}
            if score.risk is not None:
                attributes["gen_ai.evaluation.score.value"] = float(score.risk)
            if score.status != "ok":
                attributes["error.type"] = score.status
            span.add_event(EVALUATION_EVENT, attributes)
        span.set_attributes({"hallgate.decision": decision.verdict.value,
                             "hallgate.returned": decision.returned.value,
                             "hallgate.profile": decision.profile,
                             "hallgate.route": decision.route or ""})
        if decision.risk is not None:
            span.set_attribute("hallgate.risk", float(decision.risk))


class TracingMiddleware:
    """One SERVER span per API request, continuing an incoming ``traceparent``; the span
    lasts until the last byte of a stream. Sits inside the request-id middleware so the
    span carries the request id, and the JSON logs carry the trace id."""

    def __init__(self, app, tracing: Tracing):
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope, receive, send) -> None:
        endpoint = traced_endpoint(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            return await self.app(scope, receive, send)
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        # No traceparent: the current context (a span of FastAPI's own telemetry, if a
        # global provider turned it on) stays the parent.
        parent = self.tracing.propagator.extract(carrier, context=otel_context.get_current())
        attributes = {"http.request.method": scope["method"], "url.path": scope["path"],
                      "http.route": endpoint,
                      "hallgate.request_id": scope.get("state", {}).get("request_id", "")}
        with self.tracing.tracer.start_as_current_span(
                f"{scope['method']} {endpoint}", context=parent, kind=SpanKind.SERVER,
                attributes=attributes) as span:
            tracing_token = current.set(self.tracing)
            trace_token = trace_id_var.set(format(span.get_span_context().trace_id, "032x"))

            async def traced_send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    _response_attributes(span, message)
                await send(message)

            try:
                await self.app(scope, receive, traced_send)
            finally:
                current.reset(tracing_token)
                trace_id_var.reset(trace_token)


def traced_endpoint(path: str) -> str | None:
    """The span's endpoint, without a route prefix (low cardinality); None: not traced."""
    if API_MARK in path:
        return path[path.index(API_MARK):]
    return GUARDRAIL_PATH if path.endswith(GUARDRAIL_PATH) else None


def _response_attributes(span, message: dict) -> None:
    status = message["status"]
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("error.type", str(status))
    for key, value in message.get("headers", ()):
        if key in (b"x-hallgate-route", b"x-hallgate-profile", b"x-hallgate-decision",
                   b"x-hallgate-returned"):
            span.set_attribute("hallgate." + key.decode()[11:], value.decode())


def provider_name(config) -> str:
    """``gen_ai.provider.name``: litellm's provider prefix, llama.cpp for the embedded
    model, openai for the OpenAI-compatible lean path."""
    if config.provider == "litellm":
        return config.model.split("/", 1)[0] if "/" in config.model else "litellm"
    return "llama.cpp" if config.name in EMBEDDED_MODEL_NAMES else "openai"


REQUEST_ATTRIBUTES = {"temperature": "gen_ai.request.temperature",
                      "top_p": "gen_ai.request.top_p", "seed": "gen_ai.request.seed",
                      "n": "gen_ai.request.choice.count",
                      "max_tokens": "gen_ai.request.max_tokens",
                      "max_completion_tokens": "gen_ai.request.max_tokens",
                      "top_logprobs": "hallgate.request.top_logprobs"}


class TracedUpstream:
    """One GenAI CLIENT span per upstream call (the answer and every gate sample)."""

    def __init__(self, inner, tracer: trace.Tracer):
        self.inner = inner
        self.config = inner.config
        self.tracer = tracer
        self.attributes = {"gen_ai.operation.name": "chat",
                           "gen_ai.provider.name": provider_name(inner.config),
                           "gen_ai.request.model": inner.config.model,
                           "hallgate.model": inner.config.name}
        if inner.config.api_base:
            url = urlsplit(inner.config.api_base)
            self.attributes["server.address"] = url.hostname or ""
            if url.port:
                self.attributes["server.port"] = url.port
        self.span_name = f"chat {inner.config.model}"

    def __getattr__(self, name: str) -> Any:  # logprobs_supported, on_retry, ...
        return getattr(self.inner, name)

    def _start(self, body: dict, streaming: bool):
        attributes = dict(self.attributes)
        attributes["gen_ai.request.stream"] = streaming
        for key, attribute in REQUEST_ATTRIBUTES.items():
            if body.get(key) is not None:
                attributes[attribute] = body[key]
        return self.tracer.start_span(self.span_name, kind=SpanKind.CLIENT,
                                      attributes=attributes)

    async def complete(self, body: dict) -> dict:
        span = self._start(body, streaming=False)
        with trace.use_span(span, end_on_exit=True):  # records and re-raises errors
            try:
                response = await self.inner.complete(body)
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                raise
            _observe(span, response, finish_reasons=[
                c.get("finish_reason") for c in response.get("choices") or ()])
            return response

    async def stream(self, body: dict) -> AsyncIterator[dict]:
        """The span is current only while the inner stream works (never across a yield,
        where the consumer's context would be detached in the wrong order)."""
        span = self._start(body, streaming=True)
        chunks = self.inner.stream(body)
        reasons: list[str] = []
        first = True
        try:
            while True:
                token = otel_context.attach(trace.set_span_in_context(span))
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                finally:
                    otel_context.detach(token)
                if first:
                    span.add_event("hallgate.first_chunk")
                    first = False
                reasons += [c["finish_reason"] for c in chunk.get("choices") or ()
                            if c.get("finish_reason")]
                _observe(span, chunk)
                yield chunk
            span.set_attribute("gen_ai.response.finish_reasons", reasons)
        except GeneratorExit:  # the consumer stopped reading: not an upstream error
            raise
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.set_attribute("error.type", type(exc).__name__)
            raise
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]  # an async generator
            span.end()


def _observe(span, response: dict, finish_reasons: list | None = None) -> None:
    if response.get("id"):
        span.set_attribute("gen_ai.response.id", response["id"])
    if response.get("model"):
        span.set_attribute("gen_ai.response.model", response["model"])
    usage = response.get("usage")
    if usage:
        span.set_attribute("gen_ai.usage.input_tokens", int(usage.get("prompt_tokens") or 0))
        span.set_attribute("gen_ai.usage.output_tokens",
                           int(usage.get("completion_tokens") or 0))
    if finish_reasons:
        span.set_attribute("gen_ai.response.finish_reasons",
                           [r for r in finish_reasons if r])
