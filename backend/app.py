"""The FastAPI application factory. `backend.app:app` is what gunicorn/uvicorn serve."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from backend import errors
from backend.middleware import RequestIdMiddleware
from backend.routes import coaching, health, snippets, tasks
from coach import __version__
from coach.errors import Unavailable
from coach.migrate import current_revision, head_revision, migrate
from coach.runtime import Runtime
from coach.settings import Settings, get_settings

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.embedded:
            # One process owns its SQLite file: migrating here is the explicit step.
            await migrate(settings)
        else:
            revision, head = await current_revision(settings), head_revision()
            if revision != head:
                raise Unavailable(
                    f"database schema is at {revision}, code needs {head}: run "
                    "the migrate step (`python -m coach migrate`) first"
                )
        runtime = Runtime.create(settings)
        app.state.runtime = runtime
        log.info("backend started", embedded=settings.embedded, version=settings.version)
        try:
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="Code Learning Coach API",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(RequestIdMiddleware)

    api = APIRouter(prefix="/api/v1")
    for module in (snippets, coaching, tasks):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def __getattr__(name: str) -> FastAPI:
    # `backend.app:app` for servers, built on first access so that importing this module
    # (tests, tooling) does not read the environment.
    if name == "app":
        return create_app()
    raise AttributeError(name)
