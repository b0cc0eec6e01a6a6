"""Tracing: the OpenTelemetry SDK, exporting over OTLP/HTTP as the standard OTEL_* variables say.

Each process installs one SDK TracerProvider (`configure`), named for its role (service.name is
SERVICE_NAME: coach-backend, coach-worker or coach-beat). Spans are always made, so that every
response and log line has a trace id, but they leave the process only when an OTLP endpoint is
set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Sampling follows
OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (the SDK reads them).

The GenAI client histograms (`genai_metrics`) go to the same OTLP endpoint through a
MeterProvider of this module's own, every OTEL_METRIC_EXPORT_INTERVAL ms (SDK default 60000):
not the global one, so the instrumentations' own HTTP metrics, which the Prometheus endpoint
already serves, are not exported twice. OTEL_METRICS_EXPORTER=none keeps them in.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context, trace
from opentelemetry.metrics import Histogram, Meter, NoOpMeter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from coach.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
METRICS_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# The bucket boundaries the GenAI metric conventions recommend (powers of 4 tokens, doubling
# seconds from 10 ms), so that dashboards built for them fit these histograms.
TOKEN_BUCKETS: tuple[float, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
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


@dataclass(frozen=True)
class GenAIMetrics:
    """The OpenTelemetry GenAI client histograms, recorded per LLM API call."""

    token_usage: Histogram  # gen_ai.client.token.usage, one point per gen_ai.token.type
    operation_duration: Histogram  # gen_ai.client.operation.duration

    @classmethod
    def on(cls, meter: Meter) -> GenAIMetrics:
        return cls(
            meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            ),
            meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            ),
        )


_provider: TracerProvider | None = None
_exporter = _ReplaceableExporter()
_meter_provider: MeterProvider | None = None
_genai = GenAIMetrics.on(NoOpMeter("coach"))


def exporting() -> bool:
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    return exporter != "none" and any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def exporting_metrics() -> bool:
    exporter = os.environ.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower()
    return exporter != "none" and any(os.environ.get(name) for name in METRICS_ENDPOINT_VARIABLES)


def genai_metrics() -> GenAIMetrics:
    """The current instruments: no-ops unless `configure` found somewhere to export them."""
    return _genai


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
    _replace_meter_provider(_provider.resource)
    return True


def _replace_meter_provider(resource: Resource) -> None:
    """Like the span exporter, again on every `configure`: a new provider (instruments cannot
    move to another), the previous one shut down, which exports what it still holds."""
    global _meter_provider, _genai  # noqa: PLW0603 - swapped whole; readers take `genai_metrics()`
    previous = _meter_provider
    if exporting_metrics():
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
            OTLPMetricExporter,
        )

        # The reader reads OTEL_METRIC_EXPORT_INTERVAL and OTEL_METRIC_EXPORT_TIMEOUT itself.
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        _meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
        _genai = GenAIMetrics.on(_meter_provider.get_meter("coach"))
    else:
        _meter_provider, _genai = None, GenAIMetrics.on(NoOpMeter("coach"))
    if previous is not None:
        previous.shutdown()


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
    exit with os._exit) would otherwise lose its last spans and metric points."""
    millis = int(timeout_s * 1000)
    spans = _provider.force_flush(millis) if _provider is not None else True
    points = _meter_provider.force_flush(millis) if _meter_provider is not None else True
    return spans and points
