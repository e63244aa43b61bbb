"""x-hallgate-* header overrides: refused unless the profile allows them; type-checked."""

import pytest

from policies import OverrideError, Profile, apply_overrides, knob_header

ALLOWING = Profile.model_validate({
    "name": "p",
    "allow_overrides": ["h_star", "action", "edfl.m", "halt.threshold", "semantic.enabled"],
})


def test_no_overrides_by_default():
    strict = Profile(name="strict")
    with pytest.raises(OverrideError) as info:
        apply_overrides(strict, {"x-hallgate-h-star": "0.2"})
    assert info.value.header == "x-hallgate-h-star"
    assert "does not allow overriding 'h_star'" in info.value.message
    assert "allowed: none" in info.value.message


def test_allowed_overrides_are_applied_and_typed():
    headers = {"X-Hallgate-H-Star": "0.2", "x-hallgate-action": "Annotate",
               "x-hallgate-edfl-m": "3", "x-hallgate-halt-threshold": "0.7",
               "x-hallgate-semantic-enabled": "true", "content-type": "application/json"}
    p = apply_overrides(ALLOWING, headers)
    assert (p.h_star, p.action, p.detectors.edfl.m) == (0.2, "annotate", 3)
    assert p.detectors.halt.threshold == 0.7 and p.detectors.semantic.enabled is True
    assert ALLOWING.h_star == 0.05  # the shared profile is untouched


def test_no_knob_headers_returns_the_same_profile():
    assert apply_overrides(ALLOWING, {"x-hallgate-route": "strict", "accept": "*/*"}) is ALLOWING


@pytest.mark.parametrize(("header", "value", "says"), [
    ("x-hallgate-h-star", "lots", "valid number"),
    ("x-hallgate-h-star", "1.5", "less than 1"),
    ("x-hallgate-edfl-m", "2.5", "valid integer"),
    ("x-hallgate-action", "block", "'abstain', 'annotate' or 'shadow'"),
    ("x-hallgate-semantic-enabled", "maybe", "valid boolean"),
])
def test_bad_values_are_refused_naming_the_header(header, value, says):
    with pytest.raises(OverrideError) as info:
        apply_overrides(ALLOWING, {header: value})
    assert info.value.header == header
    assert f"invalid value {value!r} for {header}" in info.value.message
    assert says in info.value.message


def test_disallowed_knob_is_refused_even_when_others_are_allowed():
    with pytest.raises(OverrideError, match="does not allow overriding 'fail_mode'"):
        apply_overrides(ALLOWING, {"x-hallgate-h-star": "0.2", "x-hallgate-fail-mode": "open"})


def test_unknown_hallgate_header_is_refused():
    with pytest.raises(OverrideError, match="unknown header 'x-hallgate-hstar'"):
        apply_overrides(ALLOWING, [("x-hallgate-hstar", "0.2")])


def test_enabling_an_unavailable_detector_is_refused():
    with pytest.raises(OverrideError, match="'semantic' is not available") as info:
        apply_overrides(ALLOWING, {"x-hallgate-semantic-enabled": "1"},
                        available_detectors=["halt", "edfl"])
    assert info.value.header == "x-hallgate-semantic-enabled"


def test_header_names():
    assert knob_header("edfl.isr_threshold") == "x-hallgate-edfl-isr-threshold"
    assert knob_header("semantic.M") == "x-hallgate-semantic-m"
