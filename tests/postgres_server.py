"""A real PostgreSQL server for the tests, on a temporary directory and a free port.

    server = PostgresServer.start()     initdb + pg_ctl start (as the `postgres` user when
    url = server.create_database()      run as root: PostgreSQL refuses to run as root)
    server.stop()                       pg_ctl stop -m immediate; the directory is removed

The binaries come from Debian's `postgresql` package (scripts/install_test_tools.sh
installs it): ``initdb`` on PATH, else the newest ``/usr/lib/postgresql/<version>/bin``,
or the directory in ``HALLGATE_PG_BINDIR``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    if os.environ.get("HALLGATE_PG_BINDIR"):
        return Path(os.environ["HALLGATE_PG_BINDIR"])
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                        else 0)
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    def __init__(self, bindir: Path, root: Path, port: int):
        self.bindir, self.root, self.port = bindir, root, port
        self.data = root / "data"
        self.user_prefix: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse root: run them as `postgres`
            self.user_prefix = ["runuser", "-u", "postgres", "--"]

    @classmethod
    def start(cls, bindir: Path) -> PostgresServer:
        root = Path(tempfile.mkdtemp(prefix="hallgate-pg-"))
        server = cls(bindir, root, free_port())
        if server.user_prefix:
            pw = pwd.getpwnam("postgres")
            os.chown(root, pw.pw_uid, pw.pw_gid)
        try:
            server._run("initdb", "-D", str(server.data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--no-sync")
            options = (f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 "
                       f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            server._run("pg_ctl", "-D", str(server.data), "-l", str(root / "server.log"),
                        "-w", "-t", "60", "-o", options, "start")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def _run(self, tool: str, *args: str) -> None:
        path = self.bindir / tool
        cmd = [*self.user_prefix, str(path) if path.exists() else tool, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}"
                               f"\n{tail}")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "-d", "postgres", "-c", f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
