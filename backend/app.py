"""The FastAPI application factory. `backend.app:app` is what gunicorn/uvicorn serve."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from starlette.types import ASGIApp

from backend import errors, queue
from backend.auth import AUTH_ERRORS
from backend.middleware import HttpMetricsMiddleware, RequestContextMiddleware, on_server_span
from backend.routes import coaching, health, snippets, tasks
from coach import __version__, apikeys, metrics, tracing
from coach.errors import Unavailable
from coach.log import configure as configure_logging
from coach.migrate import current_revision, head_revision, migrate
from coach.runtime import Runtime
from coach.settings import Settings, get_settings

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # First, in the process that serves (each gunicorn worker imports the app after the fork):
    # uvicorn's and gunicorn's own loggers are routed to the JSON root handler from here on.
    configure_logging(settings)
    traced = tracing.configure(settings)
    if traced:
        tracing.instrument_libraries()
    metrics.set_build_info(settings)

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
        if settings.embedded:
            await apikeys.bootstrap(settings, runtime.sessions)
        app.state.ask_gate = queue.AskGate(settings.ask_max_waiting)
        log.info("backend started", embedded=settings.embedded, version=settings.version)
        try:
            yield
        finally:
            app.state.ask_gate.close()
            await runtime.close()
            tracing.force_flush()

    app = FastAPI(
        title="Code Learning Coach API",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs" if settings.serve_api_docs else None,
        redoc_url=None,
        # FastAPI's native OpenTelemetry stays off: one instrumentation (below), not two, and
        # none at all with OBSERVABILITY_ENABLED=false.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    errors.install(app)

    api = APIRouter(prefix="/api/v1", responses=AUTH_ERRORS)  # every route takes a key
    for module in (snippets, coaching, tasks):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)

    @app.get("/metrics", include_in_schema=False)
    def scrape() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    if traced:
        tracing.instrument_fastapi(app, on_request=on_server_span)
    _wrap_middleware_stack(app, http_metrics=settings.observability_enabled)
    return app


def _wrap_middleware_stack(app: FastAPI, *, http_metrics: bool) -> None:
    """Request context and HTTP metrics go outside Starlette's ServerErrorMiddleware (which
    `add_middleware` cannot reach), so that a 500 is counted and carries the ids too. Wraps
    whatever the tracing instrumentation built, so the server span is inside them."""
    build_inner = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        stack = build_inner()
        if http_metrics:
            stack = HttpMetricsMiddleware(stack)
        return RequestContextMiddleware(stack)

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]


def __getattr__(name: str) -> FastAPI:
    # `backend.app:app` for servers, built on first access so that importing this module
    # (tests, tooling) does not read the environment.
    if name == "app":
        return create_app()
    raise AttributeError(name)
