"""`hallgate serve` loads the gateway and nothing of the evaluation tools: no evaluation/
module, no matplotlib, no scikit-learn (checked in a fresh process, through the same
command resolution the `hallgate` script runs, up to a started gateway with its
detectors loaded)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import asyncio, json, sys
import click
from hallgate_cli import app
import typer

group = typer.main.get_command(app)
serve = group.get_command(click.Context(group), "serve")
assert serve is not None and serve.name == "serve"
from proxy.app import create_app, policy_gatekeeper
from proxy.config import Settings
from proxy.metrics import Metrics
from proxy.registry import UpstreamRegistry

create_app(Settings())

async def main():
    async with policy_gatekeeper(Settings(), UpstreamRegistry([]), Metrics(), None):
        pass

asyncio.run(main())
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                        ("evaluation", "matplotlib", "sklearn"))))
"""


def test_serve_imports_no_evaluation_module():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_the_evaluation_commands_still_load_on_demand():
    out = subprocess.run([sys.executable, "-m", "hallgate_cli", "calibrate-logprob-stats",
                          "--help"], capture_output=True, text=True, check=True,
                         timeout=300).stdout
    assert "--recording" in out
