"""Tracing: the OpenTelemetry SDK, exporting over OTLP/HTTP as the standard OTEL_* variables say.

Each process installs one SDK TracerProvider (`configure`), named for its role (service.name is
SERVICE_NAME: coach-backend, coach-worker or coach-beat). Spans are always made, so that every
response and log line has a trace id, but they leave the process only when an OTLP endpoint is
set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Sampling follows
OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (the SDK reads them).

Where to call what:
- backend: `configure`, `instrument_libraries` (Celery here makes the publish span and injects
  the traceparent into the message) and `instrument_fastapi`, in each server process;
- worker: the same minus FastAPI, in each pool process (`worker_process_init`), never in the
  parent before the fork: the exporter's thread would not survive it;
- beat: `configure` and `instrument_libraries`, for the publish spans of scheduled tasks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from coach.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Probes and scrapes would be most of the traces and tell nothing.
UNTRACED_URLS = "/metrics$,/health/live$"

tracer = trace.get_tracer("coach")


class _ReplaceableExporter(SpanProcessor):
    """The provider's one exporting processor, whose export can be replaced: a provider cannot
    be swapped once set, but a process configured again (tests, the benchmark) must send its
    spans to the new endpoint, or nowhere."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delegate: SpanProcessor | None = None

    def replace(self, delegate: SpanProcessor | None) -> None:
        with self._lock:
            previous, self._delegate = self._delegate, delegate
        if previous is not None:
            previous.shutdown()  # flushes what it still holds

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        delegate = self._delegate
        if delegate is not None:
            delegate.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        delegate = self._delegate
        if delegate is not None:
            delegate.on_end(span)

    def shutdown(self) -> None:
        self.replace(None)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        delegate = self._delegate
        return delegate.force_flush(timeout_millis) if delegate is not None else True


_provider: TracerProvider | None = None
_exporter = _ReplaceableExporter()


def exporting() -> bool:
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    return exporter != "none" and any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def configure(settings: Settings) -> bool:
    """Install this process's tracer provider (once) and its exporter (again on every call).
    Returns whether tracing is on: OBSERVABILITY_ENABLED=false leaves the API's no-op tracer."""
    global _provider  # noqa: PLW0603 - one provider per process, by OpenTelemetry's design
    if not settings.observability_enabled:
        return False
    if _provider is None:
        _provider = TracerProvider(
            resource=Resource.create(
                {
                    "service.name": settings.service_name,
                    "service.version": settings.version,
                    "deployment.environment": settings.environment,
                    "deployment.environment.name": settings.environment,  # newer semconv name
                }
            )
        )
        _provider.add_span_processor(_exporter)
        trace.set_tracer_provider(_provider)
    if exporting():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        _exporter.replace(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        _exporter.replace(None)
    return True


def instrument_libraries() -> None:
    """Process-wide and idempotent: SQLAlchemy engines created from now on, Redis clients,
    httpx clients (the LLM and embedding APIs) and Celery (publish and run spans, with the
    trace context carried in the task message's headers)."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor  # noqa: PLC0415

    # The SQLAlchemy instrumentation declares "< 2.1" and would refuse the locked 2.1: the engine
    # events it listens to are unchanged in 2.1 (tests/unit/test_observability.py checks spans).
    sqlalchemy = SQLAlchemyInstrumentor()
    if not sqlalchemy.is_instrumented_by_opentelemetry:
        sqlalchemy.instrument(skip_dep_check=True)
    celery = CeleryInstrumentor()  # type: ignore[no-untyped-call]
    others: list[Any] = [RedisInstrumentor(), HTTPXClientInstrumentor(), celery]
    for instrumentor in others:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def instrument_fastapi(
    app: FastAPI, on_request: Callable[[trace.Span, dict[str, Any]], None]
) -> None:
    """Server spans named by route template; `on_request(span, scope)` runs as each starts."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: PLC0415

    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls=UNTRACED_URLS,
        server_request_hook=on_request,
        exclude_spans=["receive", "send"],  # one span per ASGI message is noise
    )


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span, as 32 and 16 hex digits."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)


def force_flush(timeout_s: float = 10.0) -> bool:
    """Export what is buffered; a process that ends without atexit (Celery's pool processes
    exit with os._exit) would otherwise lose its last spans."""
    return _provider.force_flush(int(timeout_s * 1000)) if _provider is not None else True
