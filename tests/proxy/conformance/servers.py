"""Real servers for the upstream conformance suite: nginx and tinyproxy (Debian packages,
installed by scripts/install_test_servers.sh), a private CA made with openssl, and the
fake OpenAI upstream as its own process (so a test can kill or freeze it).

    ca = PrivateCA.create(folder)                  # ca.pem, server + client certificates
    with Nginx(folder, ca, fake_port, frozen_port) as nginx: ...   # http + https + mTLS
    with Tinyproxy(folder, nginx_ports) as proxy: ...              # CONNECT, Basic auth

nginx serves, on both its http and https ports:

    /v1/...              the fake upstream (proxied, unbuffered: chunked streams)
    /proxied-only/v1/... the same, but only to 127.0.0.2: tinyproxy binds its outgoing
                         connections there, so a direct connection gets nginx's 403 page
    /r301/ /r307/ /r308/ /loop/ /to-https/   redirects (`return <status> ...`)
    /html/v1/...         200 with an HTML page ("Sign in" portal)
    /gzip-json/v1/... /gzip-sse/v1/...      precompressed answers sent gzip whatever
                         the client accepts (gzip_static always)
    /live/v1/...         a fake upstream process the test may kill or freeze
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from proxy.embedded import free_port

REPO = Path(__file__).resolve().parents[3]
PROXY_USER, PROXY_PASSWORD = "hallgate", "s3cret-pw"  # tinyproxy takes [A-Za-z0-9-] here
HTML_PAGE = ("<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
             "<body><h1>Sign in to continue</h1></body></html>\n")


def which(tool: str) -> str | None:
    """The tool on PATH or in the sbin folders (nginx lives in /usr/sbin)."""
    return shutil.which(tool, path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"]))


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 15.0,
                  log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {process.returncode}: {detail}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} in {timeout}s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)  # a frozen process cannot exit
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class PrivateCA:
    """A CA no system store knows, a server certificate for 127.0.0.1 and localhost, and
    a client certificate, all signed by it."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, folder: Path) -> PrivateCA:
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=hallgate test CA")
        (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for name, subject in (("server", "/CN=127.0.0.1"), ("client", "/CN=hallgate")):
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                    "-out", f"{name}.csr", "-subj", subject)
            extra = ["-extfile", "san.ext"] if name == "server" else []
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *extra)
        return cls(folder / "ca.pem", folder / "server.pem", folder / "server.key",
                   folder / "client.pem", folder / "client.key")


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/nginx-access.log;
    client_body_temp_path {dir}/tmp-body;
    proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi;
    uwsgi_temp_path {dir}/tmp-uwsgi;
    scgi_temp_path {dir}/tmp-scgi;
    default_type application/octet-stream;
    keepalive_timeout 300ms;   # short keep-alive: pooled connections go stale quickly
    keepalive_requests 5;      # and nginx closes every fifth exchange
    upstream fake {{ server 127.0.0.1:{fake_port}; keepalive 8; }}
    upstream live {{ server 127.0.0.1:{live_port}; }}
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {server_cert};
        ssl_certificate_key {server_key};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
        location /v1/ {{ proxy_pass http://fake; }}
        location /proxied-only/ {{ allow 127.0.0.2; deny all; proxy_pass http://fake/; }}
        location /live/ {{ proxy_pass http://live/; proxy_read_timeout 60s; }}
        location ~ ^/r301/(.*)$ {{ return 301 /$1; }}
        location ~ ^/r307/(.*)$ {{ return 307 /$1; }}
        location ~ ^/r308/(.*)$ {{ return 308 /r307/$1; }}
        location ~ ^/loop/(.*)$ {{ return 307 /loop/$1; }}
        location ~ ^/to-https/(.*)$ {{ return 307 https://127.0.0.1:{https_port}/$1; }}
        location /html/ {{ default_type text/html; return 200 '{html}'; }}
        location /gzip-json/ {{
            root {dir}/static; gzip_static always; default_type application/json;
            error_page 405 =200 $uri;   # serve the file to a POST
        }}
        location /gzip-sse/ {{
            root {dir}/static; gzip_static always; default_type text/event-stream;
            error_page 405 =200 $uri;
        }}
    }}
    server {{
        listen 127.0.0.1:{mtls_port} ssl;
        ssl_certificate {server_cert};
        ssl_certificate_key {server_key};
        ssl_verify_client on;
        ssl_client_certificate {ca};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /v1/ {{ proxy_pass http://fake; }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground on free loopback ports; see the module docstring."""

    def __init__(self, folder: Path, ca: PrivateCA, fake_port: int, live_port: int,
                 json_answer: bytes, sse_answer: bytes):
        self.folder = folder
        self.http_port, self.https_port, self.mtls_port = free_port(), free_port(), free_port()
        for kind, answer in (("gzip-json", json_answer), ("gzip-sse", sse_answer)):
            target = folder / "static" / kind / "v1" / "chat"
            target.mkdir(parents=True)
            (target / "completions.gz").write_bytes(gzip.compress(answer))
            (target / "completions").write_bytes(answer)  # a POST must find it (405)
        self.conf = folder / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(
            dir=folder, fake_port=fake_port, live_port=live_port, http_port=self.http_port,
            https_port=self.https_port, mtls_port=self.mtls_port, ca=ca.ca,
            server_cert=ca.server_cert, server_key=ca.server_key,
            html=HTML_PAGE.replace("'", "\\'").replace("\n", "\\n")))

    def __enter__(self) -> Nginx:
        self.process = subprocess.Popen(
            [which("nginx"), "-p", str(self.folder), "-c", str(self.conf), "-e",
             str(self.folder / "nginx-error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in (self.http_port, self.https_port, self.mtls_port):
            wait_for_port(port, self.process, "nginx", log=self.folder / "nginx-error.log")
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)

    def url(self, path: str, scheme: str = "http") -> str:
        port = self.https_port if scheme == "https" else self.http_port
        return f"{scheme}://127.0.0.1:{port}{path}"


TINYPROXY_CONF = """
Port {port}
Listen 127.0.0.1
Bind 127.0.0.2
Timeout 30
LogFile "{dir}/tinyproxy.log"
LogLevel Connect
PidFile "{dir}/tinyproxy.pid"
MaxClients 32
Allow 127.0.0.1
BasicAuth {user} {password}
DisableViaHeader Yes
"""


class Tinyproxy:
    """tinyproxy in the foreground: Basic credentials required, CONNECT to any port,
    outgoing connections from 127.0.0.2 (what nginx's /proxied-only/ lets in)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.conf = folder / "tinyproxy.conf"
        self.conf.write_text(TINYPROXY_CONF.format(
            port=self.port, dir=folder, user=PROXY_USER, password=PROXY_PASSWORD))

    def __enter__(self) -> Tinyproxy:
        self.process = subprocess.Popen([which("tinyproxy"), "-d", "-c", str(self.conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process, "tinyproxy", log=self.folder / "tinyproxy.log")
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)

    def url(self, credentials: bool = True) -> str:
        from urllib.parse import quote

        auth = f"{quote(PROXY_USER)}:{quote(PROXY_PASSWORD)}@" if credentials else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.folder / "tinyproxy.log"
        return path.read_text() if path.exists() else ""


class LiveUpstream:
    """The fake upstream as its own process on a fixed port, streaming one word per
    ``token_delay_ms``: a test can SIGKILL or SIGSTOP it mid-answer."""

    def __init__(self, port: int, token_delay_ms: float = 50.0):
        self.port = port
        self.token_delay_ms = token_delay_ms

    def __enter__(self) -> LiveUpstream:
        text = " ".join(f"word{i}" for i in range(200))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_upstream", "--port", str(self.port),
             "--latency-ms", "0", "--token-delay-ms", str(self.token_delay_ms),
             "--text", text], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process, "fake upstream")
        return self

    def __exit__(self, *exc) -> None:
        stop(self.process)
