"""OpenTelemetry traces over real HTTP, exported to the SDK's in-memory exporter: span
names, parents and GenAI attributes, evaluation events, traceparent continuation, logs
linked to traces, and tracing off by default."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import httpx
import openai
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import proxy.tracing
from proxy.config import TracingSettings
from proxy.logs import JsonFormatter
from tests.conftest import fake_settings

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
POLICY = """
version: 1
routes:
  - {name: strict, match: {header: strict, path_prefix: /strict}, profile: strict}
  - {name: gated, match: {header: gated}, profile: gated}
  - {name: live, match: {header: live}, profile: live}
  - {name: sampled, match: {header: sampled}, profile: sampled}
  - {name: default, default: true, profile: relaxed}
profiles:
  strict: {detectors: {halt: {enabled: true, threshold: 0.0}}}
  relaxed: {detectors: {halt: {enabled: true, threshold: 1.0}}}
  gated: {detectors: {halt: {enabled: true, threshold: 1.0}, edfl: {enabled: true, m: 2}}}
  live: {detectors: {halt: {enabled: true, threshold: 1.0}}, streaming: passthrough}
  sampled:
    detectors:
      halt: {enabled: false}
      semantic: {enabled: true, M: 3, m: 2, entailment: lexical}
"""


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(fake_upstream, start_gateway, tmp_path, exporter) -> str:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return start_gateway(fake_settings(fake_upstream, policy_file=str(policy)),
                         span_exporter=exporter)


def client_for(url: str, route: str | None = None, **headers: str) -> openai.OpenAI:
    if route:
        headers["x-hallgate-route"] = route
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0,
                         default_headers=headers)


def by_name(exporter: InMemorySpanExporter, request_span_wait_s: float = 5.0,
            ) -> dict[str, list]:
    """Finished spans by name. The server ends a request's span after the client has read
    the last byte, so wait (boundedly) until a request span ("POST ...") is there."""
    deadline = time.monotonic() + request_span_wait_s
    while True:
        spans: dict[str, list] = {}
        for span in exporter.get_finished_spans():
            spans.setdefault(span.name, []).append(span)
        if any(name.startswith("POST ") for name in spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.01)


def test_request_upstream_and_detector_spans_continue_the_incoming_trace(traced, exporter):
    raw = client_for(traced, "strict", traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01",
                     **{"x-request-id": "req-42"}).chat.completions.with_raw_response.create(
        model="fake", messages=QUESTION, temperature=0.2, max_tokens=30)
    assert raw.http_response.headers["x-hallgate-decision"] == "abstain"
    spans = by_name(exporter)
    (request,) = spans["POST /v1/chat/completions"]
    (upstream,) = spans["chat fake-model"]
    (halt,) = spans["hallgate.detector halt"]
    assert format(request.context.trace_id, "032x") == TRACE_ID  # continued, not new
    assert format(request.parent.span_id, "016x") == PARENT_ID and request.parent.is_remote
    assert request.kind == SpanKind.SERVER and upstream.kind == SpanKind.CLIENT
    assert upstream.parent.span_id == request.context.span_id
    assert halt.parent.span_id == request.context.span_id
    assert {s.context.trace_id for s in (request, upstream, halt)} == {request.context.trace_id}
    assert request.attributes["hallgate.request_id"] == "req-42"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["hallgate.decision"] == "abstain"
    assert request.attributes["hallgate.profile"] == "strict"
    attrs = upstream.attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "fake-model"
    assert attrs["gen_ai.response.model"] == "fake-model"
    assert attrs["gen_ai.usage.input_tokens"] == 10 and attrs["gen_ai.usage.output_tokens"] == 6
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.request.max_tokens"] == 30
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["server.address"] == "127.0.0.1"
    assert halt.attributes["gen_ai.evaluation.name"] == "halt"
    assert 0.0 <= halt.attributes["hallgate.detector.risk"] <= 1.0


def test_each_verdict_is_a_gen_ai_evaluation_result_event(traced, exporter):
    client_for(traced, "strict").chat.completions.create(model="fake", messages=QUESTION)
    (request,) = by_name(exporter)["POST /v1/chat/completions"]
    (event,) = [e for e in request.events if e.name == "gen_ai.evaluation.result"]
    attrs = event.attributes
    assert attrs["gen_ai.evaluation.name"] == "halt"
    assert attrs["gen_ai.evaluation.score.label"] == "abstain"
    assert 0.0 <= attrs["gen_ai.evaluation.score.value"] <= 1.0
    assert attrs["gen_ai.evaluation.explanation"].startswith("halt: risk ")


def test_gate_calls_are_children_of_their_detector_span(traced, exporter):
    client_for(traced, "gated").chat.completions.create(model="fake", messages=QUESTION)
    spans = by_name(exporter)
    (request,) = spans["POST /v1/chat/completions"]
    (edfl,) = spans["hallgate.detector edfl"]
    assert edfl.parent.span_id == request.context.span_id
    calls = spans["chat fake-model"]
    answer = [s for s in calls if s.parent.span_id == request.context.span_id]
    gate = [s for s in calls if s.parent.span_id == edfl.context.span_id]
    assert len(answer) == 1 and len(gate) >= 3  # the full prompt and m = 2 skeletons
    events = [e.attributes["gen_ai.evaluation.name"] for e in request.events
              if e.name == "gen_ai.evaluation.result"]
    assert sorted(events) == ["edfl", "halt"]


def test_a_detector_with_two_phases_has_a_span_each_and_one_latency_observation(traced,
                                                                               exporter):
    """The semantic gate samples at prompt time and judges the answer afterwards: the
    spans say which phase each is; the latency histogram counts the detector once."""
    client_for(traced, "sampled").chat.completions.create(model="fake", messages=QUESTION)
    spans = by_name(exporter)["hallgate.detector semantic"]
    assert sorted(s.attributes["hallgate.detector.phase"] for s in spans) == ["answer",
                                                                             "prompt"]
    text = httpx.get(f"{traced}/metrics").text
    assert 'hallgate_detector_seconds_count{detector="semantic"} 1.0' in text


def test_a_streamed_response_is_one_request_span_with_a_streaming_upstream_span(traced,
                                                                               exporter):
    with client_for(traced).responses.stream(model="fake", input="Capital of France?") as s:
        assert s.get_final_response().output_text
    spans = by_name(exporter)
    (request,) = spans["POST /v1/responses"]
    (upstream,) = spans["chat fake-model"]
    assert upstream.parent.span_id == request.context.span_id
    assert upstream.attributes["gen_ai.request.stream"] is True
    assert upstream.attributes["gen_ai.usage.output_tokens"] == 6
    assert request.end_time >= upstream.end_time  # the span lasts to the stream's end


def test_an_upstream_failure_marks_the_spans_as_errors(traced, exporter, fake_upstream):
    fake_upstream.fail_next("500", times=3)
    with pytest.raises(openai.APIStatusError):
        client_for(traced).chat.completions.create(model="fake", messages=QUESTION)
    spans = by_name(exporter)
    (request,) = spans["POST /v1/chat/completions"]
    (upstream,) = spans["chat fake-model"]
    assert request.attributes["http.response.status_code"] == 502
    assert not request.status.is_ok and not upstream.status.is_ok
    assert upstream.attributes["error.type"] == "UpstreamError"


def test_a_guardrail_check_is_traced_with_its_detector(traced, exporter):
    body = {"input_type": "response", "texts": ["Paris."], "structured_messages": QUESTION,
            "additional_provider_specific_params": {"route": "strict"}}
    r = httpx.post(f"{traced}/strict/beta/litellm_basic_guardrail_api", json=body)
    assert r.json()["action"] == "BLOCKED"  # no logprobs for HALT here: fail closed
    spans = by_name(exporter)
    (request,) = spans["POST /beta/litellm_basic_guardrail_api"]
    assert request.attributes["url.path"] == "/strict/beta/litellm_basic_guardrail_api"
    (event,) = [e for e in request.events if e.name == "gen_ai.evaluation.result"]
    assert event.attributes["gen_ai.evaluation.score.label"] == "missing_logprobs"


def test_settings_turn_tracing_on_from_the_environment(monkeypatch):
    from proxy.config import Settings

    monkeypatch.setenv("HALLGATE_TRACING__ENABLED", "true")
    monkeypatch.setenv("HALLGATE_TRACING__SERVICE_NAME", "gw-eu")
    assert Settings().tracing == TracingSettings(enabled=True, service_name="gw-eu")


def test_probes_are_not_traced(traced, exporter):
    assert httpx.get(f"{traced}/healthz").status_code == 200
    httpx.get(f"{traced}/metrics")
    assert exporter.get_finished_spans() == ()


class _Formatted(logging.Handler):
    """Formats at emit time, while the request's context variables are set."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_logs_carry_the_trace_id_next_to_the_request_id(traced, exporter, fake_upstream):
    handler = _Formatted()
    logging.getLogger("hallgate").addHandler(handler)
    try:
        fake_upstream.fail_next("drop")  # logged: "stream ended by upstream error"
        with pytest.raises(openai.APIError):  # the error chunk that ends the stream
            list(client_for(traced, "live", **{"x-request-id": "req-7"}).chat.completions
                 .create(model="fake", messages=QUESTION, stream=True))
    finally:
        logging.getLogger("hallgate").removeHandler(handler)
    (request,) = by_name(exporter)["POST /v1/chat/completions"]
    logged = [line for line in handler.lines if line.get("request_id") == "req-7"]
    assert logged and all(line["trace_id"] == format(request.context.trace_id, "032x")
                          for line in logged)


@pytest.mark.parametrize("enabled, env, active", [
    (False, {}, False),
    (True, {}, True),
    (False, {"OTEL_TRACES_EXPORTER": "otlp"}, True),
    (False, {"OTEL_TRACES_EXPORTER": "none"}, False),
    (True, {"OTEL_SDK_DISABLED": "true"}, False),
])
def test_tracing_is_turned_on_by_config_or_the_standard_variables(enabled, env, active):
    assert proxy.tracing.tracing_active(TracingSettings(enabled=enabled), env) is active


def test_the_otlp_exporter_follows_the_standard_variables(monkeypatch):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from proxy.tracing.otel import otlp_exporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    exporter = otlp_exporter({"OTEL_TRACES_EXPORTER": "otlp"})
    assert isinstance(exporter, OTLPSpanExporter)
    assert exporter._endpoint == "http://collector:4318/v1/traces"
    assert otlp_exporter({"OTEL_TRACES_EXPORTER": "none"}) is None


async def test_hooks_cost_nothing_when_tracing_is_off():
    async def work():
        return 1

    coro = work()
    assert proxy.tracing.current.get() is None
    assert proxy.tracing.detector("halt", coro) is coro  # the same object, no wrapper
    assert await coro == 1
    proxy.tracing.record_decision(object())  # a no-op: never touches the decision


def test_off_by_default_loads_no_sdk_and_adds_no_middleware():
    """(FastAPI itself imports the OpenTelemetry API when it is installed.)"""
    code = ("import sys; from proxy.app import create_app; from proxy.config import Settings;"
            "app = create_app(Settings(models=[{'name': 'm', 'model': 'm', "
            "'api_base': 'http://127.0.0.1:9/v1'}]));"
            "print(any(m.startswith(('opentelemetry.sdk', 'proxy.tracing.otel'))"
            " for m in sys.modules),"
            " [m.cls.__name__ for m in app.user_middleware])")
    env = {"PATH": "/usr/bin:/bin", "HALLGATE_POLICY_FILE": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(" ", 1)[0] == "False", out.stdout
    assert "TracingMiddleware" not in out.stdout and "middleware" not in out.stdout
