"""API keys on every /api/v1 route: `Authorization: Bearer KEY` or `X-API-Key: KEY`.

No key, or an unknown or revoked one: 401 with `WWW-Authenticate: Bearer`. A valid key without
the scope an operation needs: 403. Both in the one JSON error shape. The caller's tenant and
key prefix (never the key) are bound to the request's log lines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from backend.deps import RuntimeDep
from backend.schemas import ErrorOut
from coach import apikeys
from coach.apikeys import Principal, Scope
from coach.errors import Forbidden, Unauthorized
from coach.runtime import Runtime

API_PREFIX = "/api/v1/"

# auto_error=False: the dependency below answers, in the project's error shape. Declaring both
# puts both security schemes in the OpenAPI document, as alternatives for every operation.
_bearer = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="`Authorization: Bearer <API key>`"
)
_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="The API key."
)

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorOut,
        "description": "No API key, or an unknown or revoked one",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    403: {"model": ErrorOut, "description": "The API key lacks the scope this operation needs"},
}


async def _principal(rt: Runtime, key: str | None) -> Principal:
    if not key or not key.strip():
        raise Unauthorized(
            "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
        )
    principal = await apikeys.authenticate(rt.sessions, key.strip())
    if principal is None:
        raise Unauthorized("unknown or revoked API key")
    return principal


async def authenticate(
    request: Request,
    rt: RuntimeDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    """The caller behind the request's key, or 401. Async on purpose: the log context bound
    here must be the endpoint's own, not a thread pool's copy."""
    principal = await _principal(rt, bearer.credentials if bearer is not None else header)
    request.state.principal = principal
    structlog.contextvars.bind_contextvars(tenant=principal.tenant, key_prefix=principal.prefix)
    return principal


async def refusal(request: Request) -> Unauthorized | None:
    """The 401 an /api/v1 request without a valid key gets, for errors raised before any
    dependency runs (FastAPI parses a JSON body first): a caller without a key learns
    nothing, not even that its body was malformed."""
    if not request.url.path.startswith(API_PREFIX) or hasattr(request.state, "principal"):
        return None  # not an API route, or its key was checked already
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    key = credentials if scheme.lower() == "bearer" else request.headers.get("x-api-key")
    try:
        await _principal(request.app.state.runtime, key)
    except Unauthorized as exc:
        return exc
    return None


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if scope not in principal.scopes:
            raise Forbidden(f"this API key lacks the {scope.value!r} scope")
        return principal

    dependency.__name__ = f"require_{scope.value}"
    return dependency


ReadKey = Annotated[Principal, Depends(require(Scope.read))]
WriteKey = Annotated[Principal, Depends(require(Scope.write))]
AdminKey = Annotated[Principal, Depends(require(Scope.admin))]
