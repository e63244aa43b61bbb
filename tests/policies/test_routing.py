"""resolve_route: unknown header values and path prefixes are errors, paths normalised,
keys bound to routes (policies/routing.py)."""

from __future__ import annotations

import pytest

from policies import PolicyError, RouteNotAllowed, UnknownRoute, load_policy_text, resolve_route
from policies.routing import path_prefix

POLICY = """
version: 1
routes:
  - {name: strict, match: {header: strict, path_prefix: /strict}, profile: strict-factual}
  - {name: coders, match: {model: "*coder*"}, profile: code-creative}
  - {name: default, default: true, profile: shadow}
keys:
  ci: {routes: [strict]}
  dev: {routes: [coders, default], allow_overrides: [h_star]}
"""


@pytest.fixture(scope="module")
def policy():
    return load_policy_text(POLICY, "p.yaml")


@pytest.mark.parametrize(("path", "prefix"), [
    ("/v1/chat/completions", ""), ("/strict/v1/chat/completions", "/strict"),
    ("//Strict//v1/chat/completions", "/strict"), ("/a/b/v1/chat/completions", "/a/b"),
    ("/strict/beta/litellm_basic_guardrail_api", "/strict"),
    ("/beta/litellm_basic_guardrail_api", "")])
def test_path_prefix(path, prefix):
    assert path_prefix(path) == prefix


def resolve(policy, path="/v1/chat/completions", header=None, model="m", key=None):
    return resolve_route(policy, path=path, route_header=header, model=model, key_name=key)


def test_names_resolve_and_anonymous_requests_fall_through(policy):
    assert resolve(policy, header=" STRICT ").route.name == "strict"
    assert resolve(policy, path="/STRICT/v1/chat/completions").route.name == "strict"
    assert resolve(policy, model="qwen-coder").route.name == "coders"
    assert resolve(policy).route.name == "default"


@pytest.mark.parametrize(("path", "header"), [
    ("/v1/chat/completions", "stirct"), ("/v1/chat/completions", ""),
    ("/x/strict/v1/chat/completions", None), ("/default/v1/chat/completions", None)])
def test_unknown_names_are_errors(policy, path, header):
    with pytest.raises(UnknownRoute, match="known routes: strict"):
        resolve(policy, path=path, header=header)


def test_keys_are_held_to_their_routes(policy):
    assert resolve(policy, key="ci").route.name == "strict"  # home route
    assert resolve(policy, key="ci", model="qwen-coder").route.name == "strict"
    with pytest.raises(RouteNotAllowed):
        resolve(policy, key="dev", header="strict")
    assert resolve(policy, key="other", header="strict").route.name == "strict"


def test_key_overrides_narrow_the_profile(policy):
    assert resolve(policy, key="dev").profile.allow_overrides == ()  # shadow allows none
    assert resolve(policy, key="ci").profile.allow_overrides == ()


def test_a_key_naming_an_unknown_route_is_a_load_error():
    with pytest.raises(PolicyError, match="unknown route 'strcit'"):
        load_policy_text(POLICY.replace("routes: [strict]}", "routes: [strcit]}"), "p.yaml")
