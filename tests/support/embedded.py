"""The embedded mode for tests and benchmarks: the variables that would leave it, or change
what it observes, unset."""

from __future__ import annotations

EMBEDDED_ENV_KEYS = (
    "POSTGRES_HOST",
    "REDIS_HOST",
    "QDRANT_URL",
    "S3_ENDPOINT_URL",
    "LLM_BASE_URL",
    "EMBEDDING_PROVIDER",
    # Observability: nothing from the developer's shell may export spans or change the logs.
    "SERVICE_NAME",
    "OBSERVABILITY_ENABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_METRICS_EXPORTER",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
    "PROMETHEUS_MULTIPROC_DIR",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "LOG_LEVELS",
    "LOG_FILE",
)
