"""Dependency checks behind /health/ready and /health.

Critical dependencies (database, Redis) decide between healthy and unhealthy; the others
(vectors, objects, LLM) only degrade. The LLM check is cached so probes never hammer a paid API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text

from coach.metrics import LLM_UP
from coach.runtime import Runtime
from coach.settings import Settings

Status = Literal["ok", "error", "embedded"]
Overall = Literal["healthy", "degraded", "unhealthy"]
CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    latency_ms: float
    critical: bool
    error: str | None = None
    cached: bool = False


async def _timed(name: str, critical: bool, probe: Callable[[], Awaitable[None]]) -> Check:
    started = time.perf_counter()
    error: str | None = None
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except TimeoutError:
        error = f"no answer within {CHECK_TIMEOUT_S:.0f}s"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    latency = round((time.perf_counter() - started) * 1000, 1)
    return Check(name, "error" if error else "ok", latency, critical, error)


async def database(rt: Runtime) -> Check:
    async def probe() -> None:
        async with rt.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return await _timed("database", True, probe)


async def redis(rt: Runtime) -> Check:
    if rt.redis is None:
        return Check("redis", "embedded", 0.0, True)
    client = rt.redis

    async def probe() -> None:
        if await client.ping() is not True:
            raise RuntimeError("PING did not answer PONG")

    return await _timed("redis", True, probe)


async def vectors(rt: Runtime) -> Check:
    return await _timed("qdrant", False, lambda: asyncio.to_thread(rt.vectors.ping))


async def objects(rt: Runtime) -> Check:
    return await _timed("object_store", False, rt.objects.ping)


async def llm(rt: Runtime) -> Check:
    started = time.perf_counter()
    error, cached = await asyncio.to_thread(rt.llm_probe.check)
    LLM_UP.set(0 if error else 1)
    return Check(
        "llm",
        "error" if error else "ok",
        round((time.perf_counter() - started) * 1000, 1),
        False,
        error,
        cached,
    )


def overall(checks: list[Check], reason: str | None = None) -> Overall:
    """`reason`: why the app runs degraded whatever its checks say (`degraded_reason`)."""
    if any(c.critical and c.status == "error" for c in checks):
        return "unhealthy"
    if reason or any(c.status == "error" for c in checks):
        return "degraded"
    return "healthy"


def degraded_reason(settings: Settings) -> str | None:
    """Production on local stores (`up --prod --allow-local-stores`) answers, but is degraded:
    one disk, no replication, no Qdrant snapshot in backups."""
    stores = [s for s in settings.stores_degraded.split(",") if s]
    return f"local stores: {', '.join(stores)}" if stores else None


async def ready(rt: Runtime) -> list[Check]:
    return list(await asyncio.gather(database(rt), redis(rt)))


async def full(rt: Runtime) -> list[Check]:
    return list(await asyncio.gather(database(rt), redis(rt), vectors(rt), objects(rt), llm(rt)))
