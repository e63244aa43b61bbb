"""Loading policy files: schema, extends, route matching, and errors with file:line."""

import textwrap
from pathlib import Path

import pytest

from detectors.registry import REGISTRY
from policies import PolicyError, load_policy, load_policy_text
from policies.loader import BUILTIN_DIR, EXAMPLES_DIR, builtin_profile_names
from policies.schema import DetectorsConfig


def load(text: str, **kw):
    return load_policy_text(textwrap.dedent(text), "policy.yaml", **kw)


def issues(text: str, **kw) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load(text, **kw)
    return [str(i) for i in info.value.issues]


MINIMAL = """
routes:
  - name: default
    default: true
    profile: strict-factual
"""


def test_builtin_profiles_exist_and_load():
    assert set(builtin_profile_names()) >= {"strict-factual", "code-creative", "shadow"}
    for name in builtin_profile_names():
        policy = load(MINIMAL.replace("strict-factual", name))
        assert policy.profiles[name].name == name


def test_builtin_profiles_say_what_the_issue_asks():
    policy = load("""
        routes:
          - {name: a, match: {header: a}, profile: code-creative}
          - {name: b, match: {header: b}, profile: shadow}
          - {name: d, default: true, profile: strict-factual}
    """)
    strict, code, shadow = (policy.profiles[n] for n in
                            ("strict-factual", "code-creative", "shadow"))
    assert strict.h_star == 0.05 and strict.detectors.enabled() == ("halt", "edfl")
    assert strict.skeletons.masking == "closed_book" and strict.action == "abstain"
    assert code.h_star == 0.30 and "semantic" in code.detectors.enabled()
    assert code.output_constraint == "code_or_paragraph"
    assert "python" in code.skeletons.skip_words
    assert code.escalate_factual_to == "strict-factual"
    assert shadow.action == "shadow" and shadow.extends == "strict-factual"


@pytest.mark.parametrize("path", sorted(EXAMPLES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_example_files_load(path: Path):
    policy = load_policy(path)
    assert policy.routes[-1].default


def test_default_example_routes():
    policy = load_policy(EXAMPLES_DIR / "default.yaml")
    assert [r.name for r in policy.routes] == ["strict", "fast", "code", "shadow", "default"]
    assert policy.match(route_header="fast")[1].detectors.enabled() == ("halt",
                                                                         "topk_entropy")
    assert policy.match(route_header="strict")[1].name == "strict-factual"
    assert policy.match(path="/strict/v1/chat/completions")[0].name == "strict"
    assert policy.match(route_header="code")[1].name == "code-creative-local"
    assert policy.match(path="/shadow/v1/chat/completions")[1].name == "shadow"
    route, profile = policy.match(path="/v1/chat/completions")
    assert route.name == "default" and profile.action == "annotate"


def test_registry_makes_the_detectors_section():
    assert tuple(DetectorsConfig()) == REGISTRY.names()
    assert {"halt", "edfl", "semantic", "mean_logprob"} <= set(REGISTRY.names())


ROUTES = """
routes:
  - {name: by-key, match: {key: team-a}, profile: shadow}
  - {name: by-model, match: {model: "gpt-4o*"}, profile: code-creative}
  - {name: by-path, match: {path_prefix: [/strict, /facts/]}, profile: strict-factual}
  - {name: by-header, match: {header: Code}, profile: code-creative}
  - {name: fallback, default: true, profile: strict-factual}
"""


@pytest.mark.parametrize(("request_", "expected"), [
    ({"key_name": "team-a", "model": "gpt-4o-mini"}, "by-key"),  # first match wins
    ({"model": "gpt-4o-mini", "path": "/strict/v1"}, "by-model"),
    ({"model": "gpt-3.5"}, "fallback"),
    ({"path": "/strict"}, "by-path"),
    ({"path": "/facts/v1/chat/completions"}, "by-path"),
    ({"path": "/strictly/v1"}, "fallback"),  # prefixes end on a "/" boundary
    ({"route_header": "code"}, "by-header"),  # header values ignore case
    ({"route_header": "other"}, "fallback"),
    ({}, "fallback"),
])
def test_route_matching_order_and_default(request_, expected):
    route, _ = load(ROUTES).match(**request_)
    assert route.name == expected


def test_unknown_key_is_reported_with_file_line_and_key():
    problems = issues("""
        routes:
          - name: default
            default: true
            profile: mine
        profiles:
          mine:
            detectors:
              halt:
                thresold: 0.5
    """)
    assert problems == ["policy.yaml:10: profiles.mine.detectors.halt.thresold: unknown key "
                        "'thresold' (did you mean 'threshold'? allowed: enabled, threshold)"]


def test_unknown_top_level_and_route_keys():
    problems = issues("""
        routes:
          - name: default
            default: true
            profile: strict-factual
            timeout: 3
        profile: {}
    """)
    assert problems[0].startswith("policy.yaml:6: routes[0].timeout: unknown key 'timeout'")
    assert problems[1].startswith("policy.yaml:7: profile: unknown key 'profile' "
                                  "(did you mean 'profiles'?")


def test_bad_values_name_the_key_and_the_value():
    problems = issues("""
        routes:
          - {name: default, default: true, profile: mine}
        profiles:
          mine:
            extends: strict-factual
            action: block
            h_star: 1.5
    """)
    assert problems == [
        "policy.yaml:7: profiles.mine.action: Input should be 'abstain', 'annotate' or "
        "'shadow' (got 'block')",
        "policy.yaml:8: profiles.mine.h_star: Input should be less than 1 (got 1.5)",
    ]


def test_unknown_detector_is_rejected_clearly():
    problems = issues("""
        routes:
          - {name: default, default: true, profile: mine}
        profiles:
          mine:
            detectors:
              selfcheck: {enabled: true}
    """)
    assert problems == ["policy.yaml:7: profiles.mine.detectors.selfcheck: unknown detector "
                        f"'selfcheck' (known detectors: {', '.join(REGISTRY.names())})"]


def test_detector_not_available_in_this_gateway():
    problems = issues("""
        routes:
          - {name: default, default: true, profile: mine}
        profiles:
          mine:
            detectors:
              semantic: {enabled: true}
    """, available_detectors=["halt", "edfl"])
    assert problems == [
        "policy.yaml:7: profiles.mine.detectors.semantic.enabled: detector 'semantic' is "
        "enabled but this gateway does not offer it (available: edfl, halt)"]


def test_a_problem_inherited_by_several_profiles_is_reported_once():
    problems = issues("""
        routes:
          - {name: a, match: {header: a}, profile: child}
          - {name: d, default: true, profile: base}
        profiles:
          base:
            detectors:
              semantic: {enabled: true}
          child: {extends: base, action: annotate}
          grandchild: {extends: child}
    """, available_detectors=["halt", "edfl"])
    assert problems == [
        "policy.yaml:8: profiles.base.detectors.semantic.enabled: detector 'semantic' is "
        "enabled but this gateway does not offer it (available: edfl, halt) (inherited by "
        "child, grandchild)"]


def test_problem_inside_a_builtin_points_at_the_builtin_file():
    problems = issues(MINIMAL.replace("strict-factual", "code-creative"),
                      available_detectors=["halt", "edfl"])
    builtin = BUILTIN_DIR / "code-creative.yaml"
    line = next(i for i, text in enumerate(builtin.read_text().splitlines(), 1)
                if text.strip() == "semantic:")
    assert problems[0].startswith(f"{builtin}:{line + 1}: detectors.semantic.enabled: ")
    assert problems[0].endswith("(built-in profile 'code-creative')")


def test_default_route_must_be_last_and_routes_need_conditions():
    problems = issues("""
        routes:
          - {name: d, default: true, profile: shadow}
          - {name: a, match: {header: a}, profile: shadow}
    """)
    assert problems == ["policy.yaml:3: routes[0].default: the default route must be last: "
                        "routes after it could never match"]
    problems = issues("""
        routes:
          - {name: a, match: {}, profile: shadow}
          - {name: d, default: true, match: {header: d}, profile: shadow}
    """)
    assert problems == [
        "policy.yaml:3: routes[0].match: a route needs at least one condition "
        "(path_prefix, header, model, key) or default: true",
        "policy.yaml:4: routes[1].match: the default route matches every request; remove "
        "its match conditions",
    ]


def test_route_errors_exact():
    problems = issues("""
        routes:
          - {name: a, match: {header: a}, profile: nope}
          - {name: a, match: {header: b}, profile: shadow}
    """)
    assert problems == [
        "policy.yaml:2: routes: a default route is required (a last route with "
        "`default: true`)",
        "policy.yaml:3: routes[0].profile: unknown profile 'nope' (known: black-box, "
        "code-creative, shadow, strict-factual)",
        "policy.yaml:4: routes[1].name: duplicate route name 'a'",
    ]


def test_yaml_syntax_error_and_duplicate_keys_have_lines():
    assert issues("routes:\n  - name: [unclosed\n")[0].startswith("policy.yaml:3: YAML syntax")
    problems = issues("""
        routes:
          - {name: d, default: true, profile: shadow}
        profiles: {}
        routes: []
    """)
    assert problems == ["policy.yaml:5: routes: duplicate key (first at line 2)"]


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.yaml")
    assert issues("- just\n- a list\n") == [
        "policy.yaml:1: a policy file must be a mapping with routes and profiles"]


def test_extends_merges_mappings_and_replaces_scalars_and_lists():
    policy = load("""
        routes:
          - {name: d, default: true, profile: lenient}
        profiles:
          lenient:
            extends: strict-factual
            h_star: 0.2
            skeletons: {skip_words: [regex]}
            detectors:
              edfl: {m: 3}
    """)
    p = policy.profiles["lenient"]
    assert p.extends == "strict-factual" and p.h_star == 0.2
    assert p.detectors.edfl.m == 3 and p.detectors.edfl.enabled  # merged, not replaced
    assert p.skeletons.skip_words == ("regex",) and p.skeletons.masking == "closed_book"
    assert p.fail_mode == "closed"  # inherited


def test_extends_chains_within_the_file_and_customises_builtins_by_name():
    policy = load("""
        routes:
          - {name: a, match: {header: a}, profile: child}
          - {name: d, default: true, profile: strict-factual}
        profiles:
          strict-factual:
            extends: strict-factual
            abstention_text: Not sure.
          child:
            extends: strict-factual
            action: annotate
    """)
    assert policy.profiles["strict-factual"].abstention_text == "Not sure."
    assert policy.profiles["child"].abstention_text == "Not sure."  # the file's own version
    assert policy.profiles["child"].action == "annotate"


def test_extends_unknown_and_cycles():
    assert issues("""
        routes: [{name: d, default: true, profile: a}]
        profiles:
          a: {extends: b}
          b: {extends: a}
    """) == ["policy.yaml:5: profiles.b.extends: extends cycle: a -> b -> a"]
    problems = issues("""
        routes: [{name: d, default: true, profile: a}]
        profiles:
          a: {extends: strict-factul}
    """)
    assert problems[0].startswith("policy.yaml:4: profiles.a.extends: unknown profile "
                                  "'strict-factul' (known: a, black-box, code-creative")


def test_cross_field_checks():
    problems = issues("""
        routes: [{name: d, default: true, profile: a}]
        profiles:
          a:
            combine: {mode: weighted, weights: {halt: 0, nope: 1}}
            allow_overrides: [h_star, abstention_text]
            escalate_factual_to: ghost
            detectors:
              semantic: {enabled: true, entailment: nli}
    """)
    assert problems == [
        "policy.yaml:5: profiles.a.combine.weights.nope: unknown detector 'nope' "
        f"(known detectors: {', '.join(REGISTRY.names())})",
        "policy.yaml:6: profiles.a.allow_overrides[1]: 'abstention_text' cannot be "
        "overridden per request (overridable: " + problems[1].split("(overridable: ")[1],
        "policy.yaml:9: profiles.a.detectors.semantic.nli_model_path: entailment 'nli' "
        "needs nli_model_path (a local directory; weights are never downloaded) (got None)",
    ]
    assert issues("""
        routes: [{name: d, default: true, profile: a}]
        profiles:
          a: {escalate_factual_to: ghost}
    """) == ["policy.yaml:4: profiles.a.escalate_factual_to: unknown profile 'ghost'"]


def test_only_reached_builtins_are_loaded():
    policy = load(MINIMAL)
    assert set(policy.profiles) == {"strict-factual"}
    policy = load(MINIMAL.replace("strict-factual", "code-creative"))
    assert set(policy.profiles) == {"code-creative", "strict-factual"}  # escalation target


def test_weighted_profile_needs_a_positive_weight():
    assert issues("""
        routes: [{name: d, default: true, profile: a}]
        profiles:
          a:
            combine: {mode: weighted, weights: {halt: 0}}
    """) == ["policy.yaml:5: profiles.a.combine.weights: the enabled detectors' weights sum "
             "to 0"]


def test_customised_builtin_reaches_builtins_that_extend_it():
    policy = load("""
        routes:
          - {name: s, match: {header: s}, profile: shadow}
          - {name: d, default: true, profile: strict-factual}
        profiles:
          strict-factual:
            extends: strict-factual
            h_star: 0.1
    """)
    assert policy.profiles["shadow"].h_star == 0.1
    assert policy.profiles["shadow"].action == "shadow"
