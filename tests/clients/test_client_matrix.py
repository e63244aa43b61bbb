"""Real agent clients end to end through the gateway on the fake upstream: every check of
every client script in this folder passes (scripts/client_matrix.py writes the same runs
as docs/CLIENTS.md). A client whose runtime is not installed skips here, and fails under
CI=true: scripts/install_test_tools.sh installs them all."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from client_matrix import CLIENTS, Client, run_client  # noqa: E402

from tests.clients._checks import FINAL, STRUCTURED  # noqa: E402
from tests.conftest import fake_settings  # noqa: E402


@pytest.fixture
def scripted_gateway(fake_upstream, start_gateway) -> str:
    script = fake_upstream.script
    script.text, script.structured = FINAL, STRUCTURED
    script.tool_calls = ({"name": "get_weather", "arguments": '{"city": "Paris"}'},)
    return start_gateway(fake_settings(fake_upstream))


@pytest.mark.parametrize("client", CLIENTS, ids=[c.script for c in CLIENTS])
def test_every_check_of_the_client_passes(scripted_gateway, client: Client):
    if client.command(scripted_gateway) is None:
        reason = f"{client.runtime} runtime not installed (scripts/install_test_tools.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    rows = run_client(client, scripted_gateway)
    failed = [f"{r['check']}: {r['detail']}" for r in rows if not r["ok"]]
    assert rows and not failed, failed
