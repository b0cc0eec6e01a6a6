"""One JSON error shape for every failure: {"error", "detail", "request_id", "trace_id"}.

Bad input is a 4xx; a dependency that is down is a 503 that says which; nothing the client
does can produce a 500 (those are bugs, and still answer in the same shape)."""

from __future__ import annotations

import traceback
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException

from coach.errors import CoachError
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
    return _respond(request, exc.status_code, type(exc).__name__, exc.message)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
        for e in exc.errors()
    ]
    return _respond(request, 422, "InvalidInput", detail)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
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


def _which_dependency(exc: BaseException) -> str:
    """Name the dependency behind a connection error; drivers raise bare OSErrors too, so the
    traceback's modules tell which client failed."""
    if isinstance(exc, DBAPIError):
        return "database"
    if isinstance(exc, LLMError):
        return "the LLM API"
    if isinstance(exc, BrokerError | RedisConnectionError | RedisTimeoutError):
        return "redis"
    files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(exc.__traceback__)]
    for marker, name in (
        ("asyncpg", "database"),
        ("sqlalchemy", "database"),
        ("redis", "redis"),
        ("kombu", "redis"),
    ):
        if any(f"/{marker}/" in f for f in files):
            return name
    return "a dependency"


async def dependency_down(request: Request, exc: Exception) -> JSONResponse:
    which = _which_dependency(exc)
    log.warning("dependency unavailable", dependency=which, error=str(exc)[:300])
    return _respond(
        request, 503, "Unavailable", f"{which} is unavailable; retry shortly", {"Retry-After": "5"}
    )


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return _respond(request, 500, "InternalError", "an unexpected error occurred")


def install(app: FastAPI) -> None:
    app.add_exception_handler(CoachError, coach_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    for exc_type in (
        OperationalError,
        DBAPIError,
        BrokerError,
        RedisConnectionError,
        RedisTimeoutError,
        ConnectionError,
        TimeoutError,
        LLMError,
    ):
        app.add_exception_handler(exc_type, dependency_down)
    app.add_exception_handler(Exception, unexpected)
