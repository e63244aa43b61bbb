"""Gateway API keys: ``Authorization: Bearer <key>`` checked in constant time.

Keys come from the environment (names in ``Settings.api_keys``), never from files. The
matching key's *name* goes to ``request.state.key_name`` for route matching and the audit
log. With no keys configured, the gateway is open (the default for local use). Health,
readiness and metrics endpoints never need a key.
"""

from __future__ import annotations

import hmac
import json

from proxy.config import ApiKey
from proxy.errors import AuthenticationFailed
from proxy.middleware import header_value

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def load_keys(keys: list[ApiKey], environ: dict[str, str]) -> dict[str, bytes]:
    """name -> key bytes; a configured key whose env var is unset is an error at start."""
    out = {}
    for key in keys:
        value = environ.get(key.key_env)
        if not value:
            raise ValueError(f"api key {key.name!r}: environment variable {key.key_env} is unset")
        out[key.name] = value.encode()
    return out


def match_key(presented: bytes, keys: dict[str, bytes]) -> str | None:
    """The name of the key equal to ``presented``; compares against every key, in
    constant time each, so timing does not tell which prefix matched."""
    found = None
    for name, key in keys.items():
        if hmac.compare_digest(presented, key):
            found = name
    return found


class ApiKeyMiddleware:
    def __init__(self, app, keys: dict[str, bytes]):
        self.app = app
        self.keys = keys

    async def __call__(self, scope, receive, send) -> None:
        if not self.keys or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = header_value(scope, b"authorization") or b""
        scheme, _, token = header.partition(b" ")
        name = match_key(token.strip(), self.keys) if scheme.lower() == b"bearer" else None
        if name is None:
            return await self._reject(send)
        scope.setdefault("state", {})["key_name"] = name
        await self.app(scope, receive, send)

    async def _reject(self, send) -> None:
        err = AuthenticationFailed("Incorrect or missing API key: send "
                                   "'Authorization: Bearer <key>'.")
        body = json.dumps(err.to_body()).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})
