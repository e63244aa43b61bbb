"""The client matrix: real agent clients end to end through hallgate on the fake upstream.

    .venv/bin/python scripts/client_matrix.py [--write docs/CLIENTS.md]

Starts the scripted fake upstream (tests/fake_upstream.py: tool calls to get_weather, a
final answer once the tool result is in, JSON for structured-output requests) and the
gateway on it with the default policy, then runs every client script of tests/clients/
as its own process, in the environment that holds that client (scripts/
install_test_tools.sh installs them). Each script prints one JSON line per check; the
table (client, version, what was exercised, result) goes to stdout and, with --write, to
the file. The last line is ``RESULT clients=N checks=N failed=N``; exit status 1 when a
check failed or a client is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIENT_DIR = ROOT / "tests" / "clients"
CLIENTS_VENV = ROOT / ".venv-clients"  # LlamaIndex and instructor: openai < 3
NODE_DIR = CLIENT_DIR / "node"


@dataclass(frozen=True)
class Client:
    script: str  # file under tests/clients/
    runtime: str  # "project" | "clients-venv" | "node"

    def command(self, root_url: str) -> list[str] | None:
        """How to run it; None when its runtime is not installed."""
        if self.runtime == "project":
            return [sys.executable, str(CLIENT_DIR / self.script), root_url]
        if self.runtime == "clients-venv":
            python = CLIENTS_VENV / "bin" / "python"
            return [str(python), str(CLIENT_DIR / self.script), root_url] \
                if python.exists() else None
        if not (NODE_DIR / "node_modules").exists():
            return None
        return ["node", str(NODE_DIR / self.script), root_url]


CLIENTS = (
    Client("openai_sdk.py", "project"),
    Client("langchain_openai_client.py", "project"),
    Client("openai_agents_client.py", "project"),
    Client("pydantic_ai_client.py", "project"),
    Client("instructor_client.py", "clients-venv"),
    Client("llamaindex_client.py", "clients-venv"),
    Client("vercel_ai.mjs", "node"),
)


def scripted_upstream():
    from tests.fake_upstream import FakeUpstream, Script

    sys.path.insert(0, str(CLIENT_DIR))
    from _checks import FINAL, STRUCTURED

    script = Script(text=FINAL, structured=STRUCTURED,
                    tool_calls=({"name": "get_weather", "arguments": '{"city": "Paris"}'},))
    return FakeUpstream(script).serve_in_thread()


def start_gateway(fake) -> tuple[object, str]:
    from proxy.app import create_app
    from tests.conftest import RunningServer, fake_settings

    server = RunningServer(create_app(fake_settings(fake))).start()
    return server, server.url


def run_client(client: Client, url: str, timeout: float = 300.0) -> list[dict]:
    """The client's check rows; one failing row when it is missing or crashed."""
    command = client.command(url)
    name = client.script.rsplit(".", 1)[0]
    if command is None:
        return [{"client": name, "version": "-", "check": "installed", "ok": False,
                 "detail": f"{client.runtime} runtime not installed "
                           "(scripts/install_test_tools.sh)"}]
    env = {**os.environ, "OPENAI_API_KEY": "x", "OPENAI_AGENTS_DISABLE_TRACING": "1",
           "PYTHONPATH": str(CLIENT_DIR)}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not rows:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        rows = [{"client": name, "version": "-", "check": "start", "ok": False,
                 "detail": tail[0][:300]}]
    if proc.returncode and all(r["ok"] for r in rows):
        rows.append({"client": rows[0]["client"], "version": rows[0]["version"],
                     "check": "exit", "ok": False, "detail": f"exit {proc.returncode}"})
    return rows


def table(rows: list[dict]) -> str:
    """One line per client: what was exercised and the result."""
    lines = ["| client | version | exercised | result |", "|---|---|---|---|"]
    by_client: dict[str, list[dict]] = {}
    for row in rows:
        by_client.setdefault(row["client"], []).append(row)
    for client, checks in by_client.items():
        failed = [f"{c['check']} ({c['detail']})" for c in checks if not c["ok"]]
        result = "pass" if not failed else "FAIL: " + "; ".join(failed)
        exercised = ", ".join(f"{c['check']} ({c['detail']})" if c["ok"] and c["detail"]
                              else c["check"] for c in checks)
        lines.append(f"| {client} | {checks[0]['version']} | {exercised} | {result} |")
    return "\n".join(lines)


HEADER = """# Clients through hallgate

Real client libraries, each driving the gateway (default policy, `/v1`: annotate with
HALT) over loopback HTTP on the scripted fake upstream: a request offering tools is
answered with a call to `get_weather`, the request carrying the tool's result with the
final answer, a structured-output request with JSON. Every check asserts the exact
answer the client hands back (tests/clients/). Produced by

    .venv/bin/python scripts/client_matrix.py --write docs/CLIENTS.md

(`make test` runs the same scripts in tests/clients/test_client_matrix.py; the clients
are installed by scripts/install_test_tools.sh.) LlamaIndex and instructor run from
`.venv-clients`: their releases pin openai < 3 and jiter < 0.15, which the gateway's own
openai 3 does not allow. The AI SDK 7 packages declare node >= 22; they run here on
node 20 (npm warns about the engine field).

"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the table to this markdown file")
    parser.add_argument("--only", nargs="*", help="client scripts to run (default: all)")
    args = parser.parse_args()
    fake = scripted_upstream()
    server, url = start_gateway(fake)
    try:
        rows = [row for client in CLIENTS
                if not args.only or client.script in args.only
                for row in run_client(client, url)]
    finally:
        server.stop()
        fake.stop()
    text = table(rows)
    print(text)
    if args.write:
        args.write.write_text(HEADER + text + "\n")
    failed = sum(not r["ok"] for r in rows)
    print(f"RESULT clients={len({r['client'] for r in rows})} checks={len(rows)} "
          f"failed={failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
