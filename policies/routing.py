"""Route resolution that never fails open.

:meth:`Policy.match` picks the first route whose conditions hold and falls back to the
default route. That is right for requests that name no route, and wrong for requests
that name one the policy does not know: a client that meant ``x-hallgate-route: strict``
and typed ``stirct``, or a base_url of ``/x/strict/v1``, would silently get the default
route, which may only annotate. :func:`resolve_route` refuses those instead:

- an ``x-hallgate-route`` value that no route lists                    -> UnknownRoute
- a path prefix (whatever precedes ``/v1/`` or ``/beta/``) no route covers -> UnknownRoute
- a header and a path prefix that select different routes              -> UnknownRoute
- a key whose ``keys:`` entry does not list the selected route         -> RouteNotAllowed

Paths are compared after :func:`policies.schema.normalise_path`: duplicate slashes are
collapsed and case is ignored (``//STRICT/v1`` is ``/strict/v1``); header values ignore
case and surrounding spaces. A request that names no route gets the first route matching
its model or key, else the default, unless its key is bound to routes (``keys:``): then
its home route (the first listed). The key's ``allow_overrides`` narrows the knobs the
profile lets a request change.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.schema import ROUTE_HEADER, KeyPolicy, Policy, Profile, Route, normalise_path

# Where a gateway API path starts; whatever precedes it is the route prefix. /v1/ for the
# OpenAI endpoints, /beta/ for the LiteLLM guardrail endpoint (/beta/litellm_basic_...).
API_ROOTS = ("/v1/", "/beta/")


class RoutingError(ValueError):
    """The request named a route it cannot have; ``param`` says where it named it."""

    def __init__(self, message: str, *, param: str):
        super().__init__(message)
        self.param = param  # "x-hallgate-route" or "path"


class UnknownRoute(RoutingError):
    """The header or path prefix names no route of the policy (or two different ones)."""


class RouteNotAllowed(RoutingError):
    """The request's API key may not use the route it asked for."""


@dataclass(frozen=True)
class Resolution:
    route: Route
    profile: Profile  # allow_overrides already narrowed by the key's policy


def path_prefix(path: str) -> str:
    """``/strict/v1/chat/completions`` -> ``/strict``; ``/v1/...`` -> ``""``;
    ``/strict/beta/litellm_basic_guardrail_api`` -> ``/strict``."""
    norm = normalise_path(path)
    cut = max(norm.rfind(root) for root in API_ROOTS)
    return norm[:cut] if cut > 0 else ""


def known_routes(policy: Policy) -> str:
    """``strict (header strict, path /strict), ...`` for error messages."""
    parts = []
    for route in policy.routes:
        ways = [f"header {h}" for h in route.match.header]
        ways += [f"path {p}" for p in route.match.path_prefix]
        if ways:
            parts.append(f"{route.name} ({', '.join(ways)})")
    return "; ".join(parts) or "none (this policy routes by model and key only)"


def _by_header(policy: Policy, value: str) -> Route:
    for route in policy.routes:
        if route.match.header and route.match.matches(path=None, route_header=value,
                                                      model=None, key_name=None):
            return route
    raise UnknownRoute(f"Unknown route {value.strip()!r} in {ROUTE_HEADER}; known routes: "
                       f"{known_routes(policy)}", param=ROUTE_HEADER)


def _by_prefix(policy: Policy, prefix: str) -> Route:
    for route in policy.routes:
        if route.match.path_prefix and route.match.matches(path=prefix, route_header=None,
                                                           model=None, key_name=None):
            return route
    raise UnknownRoute(f"Unknown route prefix {prefix!r} in the request path; known routes: "
                       f"{known_routes(policy)}", param="path")


def explicit_route(policy: Policy, *, path: str | None, route_header: str | None,
                   ) -> Route | None:
    """The route the request names by header or path prefix, None if it names none."""
    by_header = _by_header(policy, route_header) if route_header is not None else None
    prefix = path_prefix(path) if path else ""
    by_prefix = _by_prefix(policy, prefix) if prefix else None
    if by_header and by_prefix and by_header.name != by_prefix.name:
        raise UnknownRoute(f"{ROUTE_HEADER} selects route {by_header.name!r} but the path "
                           f"prefix {prefix!r} selects {by_prefix.name!r}; send one",
                           param=ROUTE_HEADER)
    return by_header or by_prefix


def _narrow(profile: Profile, key: KeyPolicy | None) -> Profile:
    if key is None or key.allow_overrides is None:
        return profile
    allowed = tuple(k for k in profile.allow_overrides if k in key.allow_overrides)
    return profile.model_copy(update={"allow_overrides": allowed})


def resolve_route(policy: Policy, *, path: str | None, route_header: str | None,
                  model: str | None, key_name: str | None) -> Resolution:
    """The route and profile for a request (see the module docstring for the rules)."""
    named = explicit_route(policy, path=path, route_header=route_header)
    key = policy.keys.get(key_name) if key_name is not None else None
    if named is not None:
        route = named
    else:
        route, _ = policy.match(path=None, route_header=None, model=model, key_name=key_name)
    if key is not None and key.routes and route.name not in key.routes:
        if named is not None:
            raise RouteNotAllowed(f"API key {key_name!r} may not use route {route.name!r}; "
                                  f"its routes: {', '.join(key.routes)}",
                                  param=ROUTE_HEADER if route_header is not None else "path")
        route = policy.route(key.routes[0])
    return Resolution(route, _narrow(policy.profiles[route.profile], key))
