"""Health endpoints: /health/live (process), /health/ready (database and Redis), /health
(every dependency with latency). Overall healthy/degraded → 200, unhealthy → 503. Clients
outside the internal network see each component's name and status only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from backend.deps import RuntimeDep
from backend.schemas import CheckOut, HealthOut
from coach import health

router = APIRouter(prefix="/health", tags=["health"])


# What a client outside the internal network does not see: the version tells an attacker
# which advisories apply, error text names hosts, users and paths.
INTERNAL_ONLY: dict[str, Any] = {
    "reason": True,
    "version": True,
    "environment": True,
    "checks": {"__all__": {"error", "latency_ms", "cached"}},
}


def internal(request: Request) -> bool:
    """A request that did not come through nginx. nginx sets X-Forwarded-For and X-Real-IP on
    everything it forwards (infra/compose/nginx), and no client can strip them there; a probe
    on the app network (healthchecks, Prometheus, an operator's exec) calls the backend
    directly and sends neither. Forging one only hides the details from oneself."""
    return "x-forwarded-for" not in request.headers and "x-real-ip" not in request.headers


def _response(request: Request, rt: RuntimeDep, checks: list[health.Check]) -> JSONResponse:
    reason = health.degraded_reason(rt.settings)
    overall = health.overall(checks, reason)
    body = HealthOut(
        status=overall,
        reason=reason,
        version=rt.settings.version,
        environment=rt.settings.environment,
        checks={c.name: CheckOut.model_validate(c) for c in checks},
    )
    shown = body.model_dump(mode="json", exclude=None if internal(request) else INTERNAL_ONLY)
    return JSONResponse(shown, status_code=503 if overall == "unhealthy" else 200)


@router.get("/live", summary="The process answers")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/ready",
    response_model=HealthOut,
    responses={503: {"model": HealthOut}},
    summary="Critical dependencies (database, Redis) answer",
)
async def ready(request: Request, rt: RuntimeDep) -> JSONResponse:
    return _response(request, rt, await health.ready(rt))


@router.get(
    "",
    response_model=HealthOut,
    responses={503: {"model": HealthOut}},
    summary="Every dependency, with status and latency",
)
async def full(request: Request, rt: RuntimeDep) -> JSONResponse:
    return _response(request, rt, await health.full(rt))
