"""deploy/grafana: every query of the dashboard names a metric (and labels) that a running
gateway really serves at /metrics, and the Kustomize component ships the dashboard as a
ConfigMap the Grafana sidecar picks up."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import fake_settings
from tests.deploy.tools import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "hallgate.json"
PROMQL_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right",
                             "bool", "and", "or", "unless", "offset"})
SERIES_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
                   "histogram": ("_bucket", "_count", "_sum", "_created")}
# Counted only when a detector fails, or set only for a model with a calibration bundle;
# the test declares them rather than breaking a detector or shipping a bundle for it.
MAY_HAVE_NO_SAMPLES = frozenset({"hallgate_detector_errors_total",
                                 "hallgate_calibration_psi"})  # needs a bundle
POLICY = """
version: 1
routes:
  - {name: strict, match: {header: strict}, profile: strict}
  - {name: default, default: true, profile: relaxed}
profiles:
  strict: {detectors: {halt: {enabled: true, threshold: 0.0}}}
  relaxed: {detectors: {halt: {enabled: true, threshold: 1.0}}}
"""


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries(dash: dict) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variables."""
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"] if isinstance(var["query"], dict)
                         else var["query"])
    return exprs


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names it uses) for each series an expression reads. Label
    names come from its matchers and from the ``by (...)`` clauses of the expression."""
    if m := re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", expr):
        return [(m.group(1), {m.group(2)})]
    text = re.sub(r'"[^"]*"', '""', expr)  # label values cannot look like metric names
    grouped = {label.strip() for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", text)
               for label in clause.split(",") if label.strip()}
    text = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range durations
    found = []
    for m in re.finditer(r"([A-Za-z_:][\w:]*)\s*(\{([^}]*)\})?\s*(\()?", text):
        name, matchers, call = m.group(1), m.group(3), m.group(4)
        if call or name in PROMQL_KEYWORDS:
            continue  # a function or an aggregation, not a series
        labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers or ""))
        found.append((name, labels))
    for i, (name, labels) in enumerate(found):
        found[i] = (name, labels | {g for g in grouped if g != "le" or name.endswith("_bucket")})
    return found


def exported(metrics_text: str) -> tuple[set[str], dict[str, set[str]]]:
    """(every series name the exposition declares, label names seen per series name)."""
    declared: set[str] = set()
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics_text):
        declared |= {family.name + s for s in SERIES_SUFFIXES.get(family.type, ("",))}
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return declared, labels


@pytest.fixture
def metrics_text(fake_upstream, start_gateway, tmp_path) -> str:
    """/metrics of a running gateway after traffic that touches every metric family:
    chat and Responses requests on two routes, an upstream retry and an upstream failure."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    url = start_gateway(fake_settings(fake_upstream, policy_file=str(policy)))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    client.chat.completions.create(model="fake", messages=question)
    client.responses.create(model="fake", input="What is the capital of France?",
                            extra_headers={"x-hallgate-route": "strict"})
    fake_upstream.fail_next("500")  # one retry, then success
    client.chat.completions.create(model="fake", messages=question)
    fake_upstream.fail_next("500", times=3)  # retries exhausted: an upstream error
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="fake", messages=question)
    return httpx.get(f"{url}/metrics").text


def test_every_panel_has_a_query_and_the_required_panels_exist():
    dash = dashboard()
    assert all(p.get("targets") for p in dash["panels"])
    everything = " ".join(queries(dash))
    for metric in ("hallgate_requests_total", "hallgate_decisions_total",
                   "hallgate_detector_seconds_bucket", "hallgate_detector_errors_total",
                   "hallgate_upstream_seconds_bucket", "hallgate_upstream_retries_total",
                   "hallgate_upstream_errors_total", "hallgate_tokens_total",
                   "hallgate_in_flight_requests"):
        assert metric in everything, f"no panel reads {metric}"
    assert 'outcome="abstain"' in everything  # the abstention rate
    assert "histogram_quantile(0.99" in everything and "histogram_quantile(0.5" in everything
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_selector_parser_finds_names_and_labels():
    expr = ('sum by (profile) (rate(hallgate_decisions_total{outcome="abstain", '
            'profile=~"$profile"}[5m])) / sum(rate(other_metric[5m]))')
    assert selectors(expr) == [("hallgate_decisions_total", {"outcome", "profile"}),
                               ("other_metric", {"profile"})]
    assert selectors("histogram_quantile(0.5, sum by (le) (rate(x_bucket[1m])))") \
        == [("x_bucket", {"le"})]


def test_every_query_names_metrics_and_labels_the_gateway_exports(metrics_text):
    declared, labels = exported(metrics_text)
    checked = 0
    for expr in queries(dashboard()):
        found = selectors(expr)
        assert found, f"no metric in {expr!r}"
        for name, used in found:
            assert name in declared, f"{name} (in {expr!r}) is not served at /metrics"
            if name in labels:
                missing = used - labels[name]
                assert not missing, f"{name} has no label(s) {missing} (in {expr!r})"
                checked += 1
            else:
                assert name in MAY_HAVE_NO_SAMPLES, f"{name} had no samples after traffic"
    assert checked >= 10


def test_a_misspelt_metric_would_be_caught(metrics_text):
    declared, _ = exported(metrics_text)
    (name, _), = selectors("rate(hallgate_request_total[5m])")
    assert name not in declared


def test_component_ships_the_dashboard_for_the_grafana_sidecar(rendered):
    configmaps = [m for m in rendered["overlays/openai"] if m["kind"] == "ConfigMap"
                  and m["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    assert len(configmaps) == 1
    (cm,) = configmaps
    assert cm["metadata"]["name"] == "hallgate-grafana-dashboard"  # stable: no hash suffix
    assert json.loads(cm["data"]["hallgate.json"]) == dashboard()
