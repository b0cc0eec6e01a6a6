"""Health endpoints: /health/live (process), /health/ready (database and Redis), /health
(every dependency with latency). Overall healthy/degraded → 200, unhealthy → 503."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backend.deps import RuntimeDep
from backend.schemas import CheckOut, HealthOut
from coach import health

router = APIRouter(prefix="/health", tags=["health"])


def _response(rt: RuntimeDep, checks: list[health.Check]) -> JSONResponse:
    overall = health.overall(checks)
    body = HealthOut(
        status=overall,
        version=rt.settings.version,
        environment=rt.settings.environment,
        checks={c.name: CheckOut.model_validate(c) for c in checks},
    )
    return JSONResponse(
        body.model_dump(mode="json"), status_code=503 if overall == "unhealthy" else 200
    )


@router.get("/live", summary="The process answers")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/ready",
    response_model=HealthOut,
    responses={503: {"model": HealthOut}},
    summary="Critical dependencies (database, Redis) answer",
)
async def ready(rt: RuntimeDep) -> JSONResponse:
    return _response(rt, await health.ready(rt))


@router.get(
    "",
    response_model=HealthOut,
    responses={503: {"model": HealthOut}},
    summary="Every dependency, with status and latency",
)
async def full(rt: RuntimeDep) -> JSONResponse:
    return _response(rt, await health.full(rt))
