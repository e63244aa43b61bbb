"""`hallgate policy check|match|profiles` through typer's CliRunner."""

from typer.testing import CliRunner

from policies.cli import app
from policies.loader import EXAMPLES_DIR

runner = CliRunner()


def test_check_good_file_exits_zero_with_a_summary():
    result = runner.invoke(app, ["check", str(EXAMPLES_DIR / "default.yaml")])
    assert result.exit_code == 0, result.output
    assert "OK, 5 routes" in result.output
    assert "route strict -> strict-factual (path_prefix=/strict, header=strict)" in result.output
    assert "shadow: h*=0.05, halt+edfl" in result.output and "tool calls judge" in result.output


def test_check_bad_file_prints_file_line_key_reason_and_exits_one(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("routes:\n  - {name: d, default: true, profile: mine}\nprofiles:\n"
                    "  mine:\n    detectors:\n      halt: {treshold: 0.4}\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert (f"{path}:6: profiles.mine.detectors.halt.treshold: unknown key 'treshold' "
            "(did you mean 'threshold'?") in result.output
    assert "invalid (1 problem)" in result.output


def test_check_with_fewer_available_detectors(tmp_path):
    result = runner.invoke(app, ["check", str(EXAMPLES_DIR / "default.yaml"),
                                 "--available", "halt"])
    assert result.exit_code == 1
    assert "strict-factual.yaml:" in result.output
    assert ("detectors.edfl.enabled: detector 'edfl' is enabled but this gateway does not "
            "offer it (available: halt) (built-in profile 'strict-factual'; inherited by "
            "shadow)") in result.output


def test_match_shows_route_and_profile():
    result = runner.invoke(app, ["match", str(EXAMPLES_DIR / "default.yaml"),
                                 "--path", "/code/v1/chat/completions"])
    assert result.exit_code == 0, result.output
    assert "route: code\nprofile: code-creative" in result.output
    assert "escalate_factual_to: strict-factual" in result.output


def test_match_refuses_an_unknown_route_like_the_gateway():
    result = runner.invoke(app, ["match", str(EXAMPLES_DIR / "default.yaml"),
                                 "--route", "stirct"])
    assert result.exit_code == 1
    assert "Unknown route 'stirct'" in result.output and "strict (header strict" in result.output


def test_profiles_lists_the_builtins():
    result = runner.invoke(app, ["profiles"])
    assert result.exit_code == 0, result.output
    for name in ("strict-factual", "code-creative", "shadow"):
        assert f"  {name}: h*=" in result.output


def test_hard_rule_counts_prompts_that_fire(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"q": "Barack Obama was born in 1961."}\n'
                    '{"q": "write a python function that returns 42"}\n')
    result = runner.invoke(app, ["hard-rule", str(path), "--field", "q", "--show", "5"])
    assert result.exit_code == 0, result.output
    assert "'Barack Obama' together with '1961'" in result.output
    assert result.output.strip().endswith("RESULT prompts=2 fired=1 rate=0.500")
