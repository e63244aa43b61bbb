"""Policy errors of a request as the OpenAI-shaped HTTP errors the client gets: a route it
names but cannot have (unknown: 400, not allowed for its key: 403), a refused override
(400). Never silently the default route."""

from __future__ import annotations

from collections.abc import Mapping

from policies import (
    OverrideError,
    Policy,
    Profile,
    Route,
    RouteNotAllowed,
    RoutingError,
    apply_overrides,
    resolve_route,
)
from proxy.chat.gate_session import RequestContext
from proxy.errors import InvalidRequest, PermissionDenied


def resolve_or_raise(policy: Policy, ctx: RequestContext, model: str) -> tuple[Route, Profile]:
    """The request's route and profile."""
    try:
        chosen = resolve_route(policy, path=ctx.path, route_header=ctx.route_header,
                               model=model, key_name=ctx.key_name)
    except RouteNotAllowed as exc:
        raise PermissionDenied(str(exc), param=exc.param, code="route_not_allowed") from None
    except RoutingError as exc:
        raise InvalidRequest(str(exc), param=exc.param, code="unknown_route") from None
    return chosen.route, chosen.profile


def overridden_or_raise(profile: Profile, headers: Mapping[str, str],
                        available: tuple[str, ...]) -> Profile:
    """``profile`` with the request's allowed ``x-hallgate-*`` overrides."""
    try:
        return apply_overrides(profile, headers, available_detectors=available)
    except OverrideError as exc:
        raise InvalidRequest(str(exc), param=exc.header, code="override_refused") from None
