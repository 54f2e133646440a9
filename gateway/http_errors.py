"""Every HTTP error in the documented shape, ``{"error": {"code": ..., "message": ...}}``.

The RPCs answer engine errors in that shape (gateway/rpcs.py ``Answering.http``). These handlers
cover what happens before or around them: FastAPI/Starlette's own answers (404 no such route, 405
wrong method, 422 a parameter that does not validate, which is a 400 here like any bad input) and
an exception nothing expected. That last one is a fault of the service, not of the request: it is
logged with its traceback and answered 500 with the request id to look for in the logs, never with
the exception's text (it could name hosts, processes or code).
"""
from __future__ import annotations

import logging
import uuid

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

log = logging.getLogger("ray.serve")

_CODES = {400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied", 404: "not_found",
          409: "failed_precondition",
          405: "method_not_allowed", 413: "payload_too_large", 429: "rate_limited", 503: "unavailable"}


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return Response(error_body(code, message), status_code=status, media_type="application/json", headers=headers)


def _path(request: Request) -> str:
    path = request.url.path
    return path if len(path) <= 200 else path[:200] + "..."


def request_id(request: Request | None = None) -> str:
    """The id Serve gave this request (the caller's x-request-id when it sent one)."""
    try:
        from ray.serve.context import _get_serve_request_context

        given = _get_serve_request_context().request_id
    except Exception:  # noqa: BLE001 - outside a Serve replica (unit tests)
        given = ""
    if not given and request is not None:
        given = request.headers.get("x-request-id", "")
    return given or uuid.uuid4().hex


async def _http_exception(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status == 404:
        message = f"no such resource: {_path(request)}"
    elif status == 405:
        message = f"method {request.method} not allowed on {_path(request)}"
    else:
        message = exc.detail if isinstance(exc.detail, str) and exc.detail else f"HTTP {status}"
    code = _CODES.get(status, "invalid_argument" if status < 500 else "internal")
    return error_response(status, code, message, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    problems = "; ".join(f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                         for e in exc.errors()[:5])
    return error_response(400, "invalid_argument", problems or "the request does not validate")


async def _unexpected(request: Request, exc: Exception) -> Response:
    rid = request_id(request)
    log.error("http %s %s failed (request %s)", request.method, _path(request), rid, exc_info=exc)
    return error_response(500, "internal", f"internal error; request id {rid}")


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` in the documented JSON shape."""
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
