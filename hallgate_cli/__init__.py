"""The ``hallgate`` command line: it sits above both the gateway and the evaluation tools.

    hallgate serve ...        proxy/cli.py (the gateway; imports nothing from evaluation/)
    hallgate policy ...       policies/cli.py
    hallgate eval | calibrate | calibrate-logprob-stats | halt | tune ...
                              evaluation/ (imported only when one of these runs)
"""

from __future__ import annotations

import importlib

import click
import typer
from typer.core import TyperGroup

from policies.cli import app as policy_app
from proxy.cli import serve

# commands whose modules load only when they run: "module:attribute" of a Typer app
# (a group of sub-commands) or of a command function
LAZY: dict[str, str] = {
    "eval": "evaluation.evaluate:eval_command",
    "calibrate": "evaluation.evaluate:calibrate_command",
    "calibrate-logprob-stats": "evaluation.logprob_stats:calibrate_logprob_stats",
    "halt": "evaluation.halt_commands:app",
    "tune": "evaluation.tune:tune_command",
}


def lazy_command(name: str, target: str) -> click.Command:
    module, _, attr = target.partition(":")
    found = getattr(importlib.import_module(module), attr)
    if isinstance(found, typer.Typer):
        command = typer.main.get_command(found)
    else:
        single = typer.Typer()
        single.command(name)(found)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *LAZY]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY:
            return lazy_command(cmd_name, LAZY[cmd_name])
        return super().get_command(ctx, cmd_name)


app = typer.Typer(cls=LazyGroup, help="hallgate: an OpenAI-compatible gateway that abstains "
                                      "instead of hallucinating.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.command("serve")(serve)
