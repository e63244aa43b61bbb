"""What every client script shares: run named checks, print one JSON line per check.

A client script runs as its own process (``python tests/clients/<client>.py ROOT``, ROOT
the gateway's http://host:port), in whichever venv holds that client, so this module
imports nothing from the project. The fake upstream behind the gateway is scripted by
scripts/client_matrix.py: a request offering tools gets a call to ``get_weather`` with
``{"city": "Paris"}`` until a tool result is in the conversation, which gets ``FINAL``;
a JSON response_format gets ``STRUCTURED``; anything else gets ``FINAL``.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import version

FINAL = "It is 21 degrees and clear in Paris."
STRUCTURED = '{"city": "Paris", "temp_c": 21}'
WEATHER_RESULT = '{"temp_c": 21, "sky": "clear"}'


def get_weather_impl(city: str) -> str:
    """What the tool returns (the scripted upstream then answers FINAL)."""
    assert city == "Paris", city
    return WEATHER_RESULT


class Checks:
    def __init__(self, client: str, package: str):
        self.client = client
        self.version = version(package)
        self.root = sys.argv[1].rstrip("/")
        self.failed = 0

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def run(self, name: str, fn: Callable[[], object]) -> None:
        try:
            detail = fn()
            ok, why = True, str(detail or "")
        except Exception as exc:  # a failing check is reported, the others still run
            ok, why = False, f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
            self.failed += 1
        print(json.dumps({"client": self.client, "version": self.version, "check": name,
                          "ok": ok, "detail": why[:300]}), flush=True)

    def exit(self) -> None:
        sys.exit(1 if self.failed else 0)


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)
