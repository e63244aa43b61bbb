"""Routing never fails open. An unknown x-hallgate-route value or path prefix
is a 400 naming the known routes (it used to get the default route, which only
annotates); paths are normalised (duplicate slashes, case); a key bound to `strict`
cannot leave it by header, path or override."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import fake_settings

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]

POLICY = """
version: 1
routes:
  - {name: strict, match: {header: strict, path_prefix: /strict}, profile: strict-halt}
  - {name: shadow, match: {header: shadow, path_prefix: /shadow}, profile: loose}
  - {name: default, default: true, profile: loose}
profiles:
  strict-halt:
    extends: strict-factual
    detectors: {edfl: {enabled: false}, halt: {threshold: 1.0}}
    allow_overrides: [halt.threshold]
  loose:
    extends: strict-halt
    action: annotate
keys:
  ci-bot: {routes: [strict], allow_overrides: []}
"""


@pytest.fixture
def routed(fake_upstream, start_gateway, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("HG_KEY_CI", "sk-ci")
    monkeypatch.setenv("HG_KEY_TEAM", "sk-team")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return start_gateway(fake_settings(
        fake_upstream, policy_file=str(policy),
        api_keys=[{"name": "ci-bot", "key_env": "HG_KEY_CI"},
                  {"name": "team", "key_env": "HG_KEY_TEAM"}]))


def sdk(url: str, prefix: str = "", key: str = "sk-team", **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}{prefix}/v1", api_key=key, max_retries=0,
                         default_headers=headers)


def test_unknown_route_header_is_400_naming_the_known_routes(routed):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk(routed, **{"x-hallgate-route": "stirct"}).chat.completions.create(
            model="fake", messages=MESSAGES)
    err = exc.value.body
    assert err["code"] == "unknown_route" and err["param"] == "x-hallgate-route"
    assert err["type"] == "invalid_request_error"
    assert "strict" in err["message"] and "shadow" in err["message"]


@pytest.mark.parametrize("prefix", ["/x/strict", "/strictly", "/v2"])
def test_unknown_path_prefix_is_400(routed, prefix):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk(routed, prefix).chat.completions.create(model="fake", messages=MESSAGES)
    assert exc.value.body["code"] == "unknown_route" and exc.value.body["param"] == "path"
    assert "/strict" in exc.value.body["message"]


@pytest.mark.parametrize("path", ["//strict/v1/chat/completions",
                                  "/STRICT/v1/chat/completions",
                                  "/strict//v1/chat/completions",
                                  "/Strict/v1/chat/completions"])
def test_paths_are_normalised_before_matching(routed, path):
    resp = httpx.post(f"{routed}{path}", json={"model": "fake", "messages": MESSAGES},
                      headers={"authorization": "Bearer sk-team"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-hallgate-route"] == "strict"


def test_header_and_path_naming_different_routes_is_400(routed):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk(routed, "/strict", **{"x-hallgate-route": "shadow"}).chat.completions.create(
            model="fake", messages=MESSAGES)
    assert exc.value.body["code"] == "unknown_route"


def test_requests_naming_no_route_still_get_the_default(routed):
    raw = sdk(routed).chat.completions.with_raw_response.create(model="fake",
                                                                messages=MESSAGES)
    assert raw.http_response.headers["x-hallgate-route"] == "default"


def test_a_key_bound_to_strict_gets_strict_without_asking(routed):
    raw = sdk(routed, key="sk-ci").chat.completions.with_raw_response.create(
        model="fake", messages=MESSAGES)
    assert raw.http_response.headers["x-hallgate-route"] == "strict"


@pytest.mark.parametrize(("prefix", "headers"), [("", {"x-hallgate-route": "shadow"}),
                                                 ("/shadow", {})], ids=["header", "path"])
def test_a_key_bound_to_strict_cannot_escape_it(routed, prefix, headers):
    with pytest.raises(openai.PermissionDeniedError) as exc:
        sdk(routed, prefix, key="sk-ci", **headers).chat.completions.create(
            model="fake", messages=MESSAGES)
    err = exc.value.body
    assert err["code"] == "route_not_allowed" and err["type"] == "permission_error"
    assert "strict" in err["message"]


def test_a_key_may_not_send_overrides_its_policy_forbids(routed):
    override = {"x-hallgate-halt-threshold": "0.0"}
    ok = sdk(routed, "/strict", **override).chat.completions.with_raw_response.create(
        model="fake", messages=MESSAGES)  # team: the profile allows it
    assert ok.http_response.status_code == 200
    with pytest.raises(openai.BadRequestError) as exc:
        sdk(routed, key="sk-ci", **override).chat.completions.create(model="fake",
                                                                     messages=MESSAGES)
    assert exc.value.body["code"] == "override_refused"
