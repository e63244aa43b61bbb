"""Every error the gateway can return, and the one mapping to OpenAI's error shape.

    HallgateError                      500 server_error
    ├── InvalidRequest                 400 invalid_request_error (names the field in `param`)
    ├── AuthenticationFailed           401 authentication_error
    ├── PermissionDenied               403 permission_error (e.g. a key bound to a route)
    ├── ModelNotFound                  404 invalid_request_error, code model_not_found
    ├── PayloadTooLarge                413 invalid_request_error
    ├── Overloaded                     429 rate_limit_error: the gateway's own in-flight limit
    ├── UpstreamError                  502 upstream_error (retries exhausted, bad reply)
    │   ├── UpstreamRejected           the upstream's own 4xx status (not retryable)
    │   └── UpstreamRateLimited        429 rate_limit_error + the upstream's Retry-After
    └── UpstreamTimeout                504 upstream_timeout (total deadline passed)

Code raises these; ``install_error_handlers`` registers the single conversion to
``{"error": {"message", "type", "param", "code"}}``. Foreign errors (FastAPI validation,
Starlette HTTP errors, anything unexpected) are mapped here too, so nothing reaches a
client as a bare 500 or a stack trace.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from proxy.audit import audit_failure

log = logging.getLogger("hallgate.errors")


def mid_stream_error(exc: BaseException) -> dict:
    """The error event that ends a stream broken after its first chunk (the status is
    sent already): a HallgateError's own body; anything else is a bug of ours, logged with
    its traceback and shown as an internal error."""
    if isinstance(exc, HallgateError):
        if not exc.logged:  # an upstream failure has its own line already
            log.warning("stream ended by error: %s", exc.message)
        return exc.to_body()
    log.error("stream failed after its first chunk", exc_info=exc)
    return HallgateError("The gateway hit an internal error mid-stream; see its logs."
                         ).to_body()


class HallgateError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None
    logged = False  # set once a log line has told this error (proxy/upstream/instrumented.py)

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers (Retry-After on a 429)."""
        return {}


class InvalidRequest(HallgateError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(HallgateError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(HallgateError):
    status = 403
    type = "permission_error"


class ModelNotFound(HallgateError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLarge(HallgateError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class Overloaded(HallgateError):
    """The gateway's own global or per-key in-flight limit is reached (proxy/limits.py)."""

    status = 429
    type = "rate_limit_error"

    def __init__(self, message: str, *, scope: str, retry_after: float):
        super().__init__(message, code=f"{scope}_concurrency_limit")
        self.scope = scope  # "global" or "key"
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(max(1, math.ceil(self.retry_after)))}


class UpstreamError(HallgateError):
    status = 502
    type = "upstream_error"


class UpstreamRejected(UpstreamError):
    """The upstream answered a non-retryable 4xx; we pass its status and message on."""

    def __init__(self, message: str, *, status: int, param: str | None = None,
                 code: str | None = None):
        super().__init__(message, param=param, code=code)
        self.status = status


class UpstreamRateLimited(UpstreamError):
    """The upstream kept answering 429 and its Retry-After does not fit in the deadline:
    pass the 429 on with that Retry-After, since the SDKs retry 429 themselves."""

    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # seconds, from the upstream's Retry-After

    @property
    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, math.ceil(self.retry_after)))}


class UpstreamTimeout(HallgateError):
    status = 504
    type = "upstream_timeout"


def error_body(message: str, type_: str, param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _validation_param(loc: tuple) -> str | None:
    """('body', 'messages', 0, 'role') -> 'messages[0].role'."""
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def invalid_field(param: str | None, msg: str) -> InvalidRequest:
    """One 400 naming the bad field (``param``, e.g. ``messages[0].role``; None: the
    request body as a whole) and what is wrong with it."""
    where = f"'{param}'" if param else "request body"
    return InvalidRequest(f"Invalid value for {where}: {msg}", param=param)


def validation_error(errors: list[dict]) -> InvalidRequest:
    """Turn pydantic/FastAPI validation errors into one 400 naming the first bad field."""
    first = errors[0]
    return invalid_field(_validation_param(tuple(first.get("loc", ()))),
                         first.get("msg", "invalid value"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HallgateError)
    async def _hallgate(_: Request, exc: HallgateError) -> JSONResponse:
        audit_failure(exc.status, exc.type, exc.code, exc.message)
        return JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(list(exc.errors()))
        return JSONResponse(err.to_body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        body = error_body(str(exc.detail), type_, None, None)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        audit_failure(500, "server_error", None, repr(exc))
        body = error_body("The gateway hit an internal error; see its logs.", "server_error")
        return JSONResponse(body, status_code=500)
