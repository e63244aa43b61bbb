"""Prometheus metrics on a registry of the app's own (no globals), served at /metrics.

Label values are bounded: routes and profiles come from the policy file, models from the
config (anything else is ``unknown``), status codes are grouped as ``2xx``/``4xx``/...
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

GATED_PATHS = ("/chat/completions", "/responses")  # the endpoints counted per route/profile
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("hallgate_requests", "Chat requests by route, profile and "
                                "status class", ["route", "profile", "status"], registry=r)
        self.in_flight = 0  # chat requests being served; the gauge reads it at scrape time
        Gauge("hallgate_in_flight_requests", "Chat requests being served",
              registry=r).set_function(lambda: self.in_flight)
        self.decisions = Counter("hallgate_decisions", "Gate decisions by profile and "
                                 "outcome", ["profile", "outcome"], registry=r)
        self.detector_seconds = Histogram("hallgate_detector_seconds", "Detector latency",
                                          ["detector"], buckets=LATENCY_BUCKETS, registry=r)
        self.detector_errors = Counter("hallgate_detector_errors", "Detector failures",
                                       ["detector"], registry=r)
        self.upstream_seconds = Histogram("hallgate_upstream_seconds", "Upstream call "
                                          "latency, retries included", ["model"],
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_retries = Counter("hallgate_upstream_retries", "Upstream retries",
                                        ["model"], registry=r)
        self.upstream_errors = Counter("hallgate_upstream_errors", "Upstream calls that "
                                       "failed after retries", ["model"], registry=r)
        self.upstream_unsolicited = Counter(
            "hallgate_upstream_unsolicited_closes", "Upstream connections closed because "
            "bytes arrived that no request asked for (never delivered to anyone)", registry=r)
        self.tokens = Counter("hallgate_tokens", "Tokens reported by upstreams",
                              ["model", "kind"], registry=r)
        self.uncalibrated = Counter("hallgate_uncalibrated_requests", "Gated requests whose "
                                    "model has no calibration bundle (or one lacking an "
                                    "enabled per-model detector), by the profile's behaviour",
                                    ["model", "behaviour"], registry=r)
        self.calibration_reloads = Counter("hallgate_calibration_reloads", "Calibration "
                                           "bundle reloads by model and result (accepted, "
                                           "refused: the previous bundle stays)",
                                           ["model", "result"], registry=r)
        self.calibration_bundle = Gauge("hallgate_calibration_bundle_info", "The "
                                        "calibration bundle in force for each model "
                                        "(name@digest, as x-hallgate-calibration names it; "
                                        "none: uncalibrated): 1 for the current one",
                                        ["model", "bundle"], registry=r)
        self.calibration_psi = Gauge("hallgate_calibration_psi", "Population Stability "
                                     "Index of each detector's last scores against the "
                                     "model's bundle calibration histogram (> 0.2: drift)",
                                     ["model", "detector"], registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class MetricsMiddleware:
    """Counts chat requests by the route/profile the gate reported in its headers."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, str], object] = {}  # label set -> counter

    def _count(self, route: str, profile: str, status: str) -> None:
        key = (route, profile, status)
        child = self._children.get(key)
        if child is None:  # label values are bounded (module docstring), so is this dict
            child = self._children[key] = self.metrics.requests.labels(*key)
        child.inc()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith(GATED_PATHS):
            return await self.app(scope, receive, send)
        labels = {"route": "none", "profile": "none", "status": "5xx"}

        async def observing_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                labels["status"] = status_class(message["status"])
                for k, v in message.get("headers", ()):
                    if k == b"x-hallgate-route":
                        labels["route"] = v.decode()
                    elif k == b"x-hallgate-profile":
                        labels["profile"] = v.decode()
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, observing_send)
        finally:
            self.metrics.in_flight -= 1
            self._count(labels["route"], labels["profile"], labels["status"])
