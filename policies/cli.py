"""``hallgate policy ...``: check policy files before deploying them.

    hallgate policy check policy.yaml            # exit 0 + summary, or 1 + file:line: key: why
    hallgate policy match policy.yaml --path /strict/v1/chat/completions --model gpt-4o
    hallgate policy profiles                     # the built-in profiles
    hallgate policy hard-rule prompts.jsonl --field question   # which prompts escalate
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml

from detectors.registry import REGISTRY
from policies.hard_rule import factual_signal
from policies.loader import BUILTIN_DIR, builtin_profile_names, load_policy, load_policy_text
from policies.routing import RoutingError, resolve_route
from policies.schema import Policy, Profile
from policies.yaml_source import PolicyError

app = typer.Typer(help="Policy files: check them before deploying.", no_args_is_help=True)

_AVAILABLE_HELP = (f"Comma-separated detectors the gateway offers (default: all known: "
                   f"{','.join(REGISTRY.names())}).")


@app.callback()
def _policy() -> None:
    """Policy files: routes choose a profile, profiles say how answers are judged."""


def _available(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _load_or_exit(file: Path, available: str | None) -> Policy:
    try:
        return load_policy(file, available_detectors=_available(available))
    except PolicyError as exc:
        for issue in exc.issues:
            typer.echo(str(issue), err=True)
        n = len(exc.issues)
        typer.echo(f"{file}: invalid ({n} problem{'s' if n != 1 else ''})", err=True)
        raise typer.Exit(1) from None


def _profile_line(profile: Profile) -> str:
    dets = "+".join(profile.detectors.enabled()) or "no detectors"
    base = f", extends {profile.extends}" if profile.extends else ""
    return (f"  {profile.name}: h*={profile.h_star:g}, {dets}, combine {profile.combine.mode}, "
            f"action {profile.action}, fail {profile.fail_mode}, streaming {profile.streaming}, "
            f"tool calls {profile.tool_calls}{base}")


@app.command()
def check(
    file: Path = typer.Argument(..., help="The policy YAML file."),
    available: str | None = typer.Option(None, help=_AVAILABLE_HELP),
) -> None:
    """Validate FILE: print a summary and exit 0, or each problem and exit 1."""
    policy = _load_or_exit(file, available)
    typer.echo(f"{file}: OK, {len(policy.routes)} routes, {len(policy.profiles)} profiles")
    for route in policy.routes:
        when = "default" if route.default else ", ".join(
            f"{k}={'|'.join(v)}" for k, v in route.match.model_dump().items() if v)
        typer.echo(f"  route {route.name} -> {route.profile} ({when})")
    for profile in policy.profiles.values():
        typer.echo(_profile_line(profile))


@app.command()
def match(
    file: Path = typer.Argument(..., help="The policy YAML file."),
    path: str | None = typer.Option(None, help="Request path, e.g. /strict/v1/chat/completions"),
    route: str | None = typer.Option(None, "--route", help="Value of x-hallgate-route."),
    model: str | None = typer.Option(None, help="The request's model name."),
    key: str | None = typer.Option(None, help="Name of the gateway API key used."),
) -> None:
    """Show which route and profile a request would get, with every knob of the profile
    (or, exit 1, why the gateway would refuse it: an unknown route, a key's binding)."""
    policy = _load_or_exit(file, None)
    try:
        chosen = resolve_route(policy, path=path, route_header=route, model=model,
                               key_name=key)
    except RoutingError as exc:
        typer.echo(f"refused ({type(exc).__name__}): {exc}", err=True)
        raise typer.Exit(1) from None
    profile = chosen.profile
    typer.echo(f"route: {chosen.route.name}\nprofile: {profile.name}")
    typer.echo(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False,
                              default_flow_style=None, width=100).rstrip())


@app.command()
def profiles() -> None:
    """List the built-in profiles a policy file can use or extend."""
    names = builtin_profile_names()
    routes = "\n".join(f"  - {{name: r{i}, match: {{header: r{i}}}, profile: {n}}}"
                        for i, n in enumerate(names))
    text = f"routes:\n{routes}\n  - {{name: d, default: true, profile: {names[0]}}}\n"
    policy = load_policy_text(text, "<built-ins>")
    typer.echo(f"built-in profiles (in {BUILTIN_DIR}):")
    for name in names:
        typer.echo(_profile_line(policy.profiles[name]))
        typer.echo(f"    {policy.profiles[name].description}")


def _read_prompts(file: Path, fields: list[str]) -> list[str]:
    """Prompts from a text file (one per line), JSONL or a JSON list (``fields`` joined)."""
    text = file.read_text(encoding="utf-8")
    if not fields:
        return [line for line in text.splitlines() if line.strip()]
    if file.suffix == ".json":
        items = json.loads(text)
    else:
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [" ".join(str(item[f]) for f in fields) for item in items]


@app.command("hard-rule")
def hard_rule(
    file: Path = typer.Argument(..., help="Prompts: text (one per line), JSONL or JSON list."),
    field: list[str] = typer.Option([], "--field", help="JSON field(s) holding the prompt."),
    show: int = typer.Option(0, help="Print this many prompts that fire, with why."),
) -> None:
    """Count the prompts the hard rule would send from code-creative to strict-factual."""
    prompts = _read_prompts(file, field)
    fired = [(p, s) for p in prompts if (s := factual_signal(p)) is not None]
    for prompt, signal in fired[:show]:
        typer.echo(f"{prompt[:100]!r}: {signal.describe()}")
    rate = len(fired) / len(prompts) if prompts else 0.0
    typer.echo(f"RESULT prompts={len(prompts)} fired={len(fired)} rate={rate:.3f}")
