"""One JSON error shape for every failure: {"error", "detail", "request_id", "trace_id"}.

Bad input is a 4xx; a dependency that is down is a 503 that says which; nothing the client
does can produce a 500 (those are bugs, and still answer in the same shape)."""

from __future__ import annotations

from typing import Any

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from starlette.exceptions import HTTPException

from backend import auth
from coach import failures
from coach.errors import CoachError, InternalError, Unavailable
from coach.llm import LLMError

log = structlog.get_logger(__name__)


def error_body(request: Request, error: str, detail: Any) -> dict[str, Any]:
    return {
        "error": error,
        "detail": detail,
        "request_id": getattr(request.state, "request_id", None),
        "trace_id": getattr(request.state, "trace_id", None),
    }


def _respond(
    request: Request, status: int, error: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(request, error, detail), status_code=status, headers=headers)


async def coach_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CoachError)
    return _respond(request, exc.status_code, type(exc).__name__, exc.message, exc.headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    refused = await auth.refusal(request)  # no key: 401, whatever else is wrong
    if refused is not None:
        return await coach_error(request, refused)
    detail = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
        for e in exc.errors()
    ]
    return _respond(request, 422, "InvalidInput", detail)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    # A body FastAPI could not even read (400) comes before the key check: no key, 401.
    refused = await auth.refusal(request) if exc.status_code == 400 else None
    if refused is not None:
        return await coach_error(request, refused)
    names = {
        404: "NotFound",
        405: "MethodNotAllowed",
        413: "PayloadTooLarge",
        415: "UnsupportedMediaType",
    }
    return _respond(
        request,
        exc.status_code,
        names.get(exc.status_code, "HTTPError"),
        exc.detail,
        dict(exc.headers) if exc.headers else None,
    )


async def failure(request: Request, exc: Exception) -> JSONResponse:
    """Every other exception, classified (coach.failures): a dependency that cannot be reached
    is a 503 with Retry-After, a value the database refuses a 4xx, anything else a 500. The
    client reads the dependency's name or a fixed sentence; the exception is in the log."""
    error = failures.as_coach_error(exc)
    if isinstance(error, Unavailable):
        log.warning(
            "dependency unavailable", dependency=failures.dependency(exc), error=str(exc)[:300]
        )
    elif isinstance(error, InternalError):
        log.exception("unhandled error", exc_info=exc)
    else:  # the values refused are user data: the type and the SQLSTATE are enough
        log.warning(
            "database refused the request",
            status=error.status_code,
            exception=type(exc).__name__,
            sqlstate=failures.sqlstate(exc),
        )
    return await coach_error(request, error)


def install(app: FastAPI) -> None:
    app.add_exception_handler(CoachError, coach_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    # Raised by the clients of the dependencies: handled inside the app (Starlette re-raises
    # what reaches the catch-all `Exception` handler to the server, after answering).
    for exc_type in (
        DBAPIError,
        SQLAlchemyTimeout,
        DisconnectionError,
        BrokerError,
        RedisError,
        OSError,  # ConnectionError, TimeoutError, socket.gaierror
        httpx.TransportError,
        LLMError,
    ):
        app.add_exception_handler(exc_type, failure)
    app.add_exception_handler(Exception, failure)
