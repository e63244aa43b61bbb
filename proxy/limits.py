"""Backpressure: a global and a per-key limit on gated requests in flight.

Past a limit the gateway answers at once with 429 in the OpenAI error shape and a
``Retry-After`` header (the SDKs back off and retry 429 by themselves) instead of queueing
without bound: at 500 connections requests used to wait up to 20 s with no signal.

A request holds its slot until its response is complete (a stream until its last
chunk). Every POST is limited (chat completions, responses, the guardrail endpoint: each
costs upstream calls and detector work); health, readiness, metrics and the model list
(GETs) never are. The per-key limit applies to requests with a gateway API key (by the key's
name, so it needs ``ApiKeyMiddleware`` outside this one).

    hallgate_limit_rejected_total{scope="global"|"key"}   requests answered 429 here
    hallgate_limit_in_flight                              requests holding a slot
"""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, Counter, Gauge

from proxy.config import LimitSettings
from proxy.errors import Overloaded


class InFlightLimits:
    """The counts and metrics behind the limits, one per app (shared by every chain)."""

    def __init__(self, settings: LimitSettings, registry: CollectorRegistry):
        self.settings = settings
        self.in_flight = 0
        self.per_key: dict[str, int] = {}
        self.rejected = Counter("hallgate_limit_rejected", "Requests refused with 429 "
                                "by the gateway's own in-flight limits", ["scope"],
                                registry=registry)
        self.gauge = Gauge("hallgate_limit_in_flight", "Requests holding an in-flight "
                           "slot", registry=registry)
        self.gauge.set_function(lambda: self.in_flight)  # read at scrape, not per request

    def refusal(self, key: str | None) -> Overloaded | None:
        """Why a new request may not start now, or None when it may."""
        cap, per_key = self.settings.max_in_flight, self.settings.max_in_flight_per_key
        if cap is not None and self.in_flight >= cap:
            return Overloaded(f"The gateway is at its limit of {cap} requests in flight; "
                              "retry later.", scope="global",
                              retry_after=self.settings.retry_after_s)
        if key is not None and per_key is not None and self.per_key.get(key, 0) >= per_key:
            return Overloaded(f"API key {key!r} is at its limit of {per_key} requests in "
                              "flight; retry later.", scope="key",
                              retry_after=self.settings.retry_after_s)
        return None

    def enter(self, key: str | None) -> None:
        self.in_flight += 1
        if key is not None:
            self.per_key[key] = self.per_key.get(key, 0) + 1

    def leave(self, key: str | None) -> None:
        self.in_flight -= 1
        if key is not None:
            left = self.per_key.get(key, 1) - 1
            if left:
                self.per_key[key] = left
            else:
                self.per_key.pop(key, None)


class ConcurrencyLimitMiddleware:
    def __init__(self, app, limits: InFlightLimits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        key = (scope.get("state") or {}).get("key_name")
        refused = self.limits.refusal(key)
        if refused is not None:
            self.limits.rejected.labels(refused.scope).inc()
            return await _reject(send, refused)
        self.limits.enter(key)
        try:
            await self.app(scope, receive, send)
        finally:
            self.limits.leave(key)


async def _reject(send, err: Overloaded) -> None:
    body = json.dumps(err.to_body()).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
