"""OpenTelemetry traces with the GenAI semantic conventions: off by default.

    request span    POST /v1/chat/completions      (SERVER; continues a W3C traceparent)
    ├── chat <model>                               (CLIENT; one per upstream call: the answer)
    ├── hallgate.detector halt                     (one per detector run)
    └── hallgate.detector edfl
        └── chat <model>                           (the gate's own upstream calls)
    + one ``gen_ai.evaluation.result`` event per detector verdict on the request span

This module is what the hot path imports: the hooks below cost one context-variable
read when tracing is off, and nothing here imports OpenTelemetry. The implementation
(``proxy.tracing.otel``) is imported only when tracing is turned on, by config
(``tracing: {enabled: true}`` / ``HALLGATE_TRACING__ENABLED=true``) or by the standard
``OTEL_TRACES_EXPORTER`` variable; ``OTEL_SDK_DISABLED=true`` turns it off. The exporter
is OTLP, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from proxy.config import TracingSettings

# The request's tracing, set by the tracing middleware; None when tracing is off.
current: contextvars.ContextVar[RequestTracing | None] = contextvars.ContextVar(
    "hallgate_tracing", default=None)


class RequestTracing(Protocol):
    def detector(self, name: str, work: Awaitable[Any], phase: str) -> Awaitable[Any]: ...

    def record_decision(self, decision: Any) -> None: ...


def detector(name: str, work: Awaitable[Any], phase: str = "answer") -> Awaitable[Any]:
    """``work`` (one phase of a detector's run: ``prompt`` for the work started with the
    request, ``answer`` for the judgement of the answer) inside a child span when tracing
    is on."""
    tracing = current.get()
    return work if tracing is None else tracing.detector(name, work, phase)


def record_decision(decision: Any) -> None:
    """Each detector's verdict as a ``gen_ai.evaluation.result`` event (tracing on)."""
    tracing = current.get()
    if tracing is not None:
        tracing.record_decision(decision)


def tracing_active(settings: TracingSettings, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return settings.enabled or exporter not in ("", "none")


def build_tracing(settings: TracingSettings, exporter: Any = None):
    """The app's :class:`proxy.tracing.otel.Tracing`, or None when tracing is off.
    ``exporter`` (a SpanExporter, e.g. the SDK's in-memory one) turns it on regardless."""
    if exporter is None and not tracing_active(settings):
        return None
    try:
        from proxy.tracing.otel import Tracing
    except ImportError as exc:
        raise RuntimeError("tracing is enabled but OpenTelemetry is not installed: pip "
                           "install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"
                           ) from exc
    return Tracing.create(settings, exporter)
