"""Prometheus metrics of the backend and the worker, in one place.

The names and labels are a contract with infra/observability (dashboards and alerts): change
them there in the same commit. Every name follows Prometheus' naming guide: one `coach_` prefix
(so none collides with an exporter's, e.g. celery-exporter's celery_*), the unit in the name,
`_total` on counters; tests/unit/test_metric_names.py holds them to it. Label values stay
bounded: routes are templates, models and task names come from configuration and code, never
from a request.

Several processes per role (gunicorn workers, Celery's prefork children) share one endpoint in
multiprocess mode: PROMETHEUS_MULTIPROC_DIR, set before Python starts, makes every process write
its values to files there (see coach/multiprocess.py), and `render` sums them. Gauges say how
(`multiprocess_mode`); custom collectors cannot live in those files, so they are registered on
the serving registry instead (the worker's queue length).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from coach.multiprocess import multiprocess_dir
from coach.settings import Settings

LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# HTTP (backend)
HTTP_REQUESTS = Counter(
    "coach_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "coach_http_request_duration_seconds",
    "HTTP request latency, by method and route template.",
    ["method", "route"],
)
SNIPPETS_INGESTED = Counter(
    "coach_snippets_ingested_total", "Snippet uploads accepted for indexing."
)

# The coach agent and its LLM (backend)
LLM_REQUESTS = Counter(
    "coach_llm_requests_total",
    "LLM generate calls, by model and outcome (ok|error).",
    ["model", "status"],
)
LLM_DURATION = Histogram(
    "coach_llm_request_duration_seconds",
    "LLM generate call latency.",
    ["model"],
    buckets=LLM_BUCKETS,
)
LLM_TOKENS = Counter(
    "coach_llm_tokens_total",
    "Tokens used by LLM calls, by kind (prompt|completion).",
    ["model", "kind"],
)
# Labelless: a per-key label would grow with the keys; the log line names the key.
LLM_BUDGET_EXHAUSTED = Counter(
    "coach_llm_budget_exhausted_total",
    "Asks refused with 429 because the API key's daily token budget was spent.",
)
ASKS_SHED = Counter(
    "coach_asks_shed_total",
    "Asks refused with 503 at once: the backend process already waited for ASK_MAX_WAITING.",
)
AGENT_STEP_DURATION = Histogram(
    "coach_agent_step_duration_seconds",
    "Duration of each coach agent step (retrieve|prompt|generate).",
    ["step"],
    buckets=STEP_BUCKETS,
)
LLM_UP = Gauge(
    "coach_llm_up",
    "1 if the last LLM probe (worker task or backend /health) succeeded, else 0.",
    multiprocess_mode="mostrecent",
)

# Worker
SNIPPETS_INDEXED = Counter("coach_snippets_indexed_total", "Snippets indexed by the worker.")
SNIPPETS_FAILED = Counter("coach_snippets_failed_total", "Snippets whose indexing failed for good.")
ORPHAN_OBJECTS_REMOVED = Counter(
    "coach_orphan_objects_removed_total",
    "Objects under snippets/ deleted because no snippet row named them (a refused upload's).",
)
INDEX_TASKS_RESENT = Counter(
    "coach_index_tasks_resent_total",
    "Index tasks re-sent because the run indexing their snippet died (its lease lapsed).",
)
INDEX_TASKS_SKIPPED = Counter(
    "coach_index_tasks_skipped_total",
    "Index messages dropped because another run holds the snippet's lease (it finishes it).",
)
CELERY_TASKS = Counter(
    "coach_celery_tasks_total",
    "Celery task executions, by task and state (started|succeeded|failed|retried).",
    ["task", "state"],
)
CELERY_TASK_DURATION = Histogram(
    "coach_celery_task_duration_seconds",
    "Celery task run time.",
    ["task"],
    buckets=TASK_BUCKETS,
)
WORKER_HEARTBEAT = Gauge(
    "coach_worker_heartbeat_timestamp_seconds",
    "Unix time of the worker consumer's last heartbeat (stale: the consumer is stuck or gone).",
    multiprocess_mode="max",
)

# Every process
BUILD_INFO = Gauge(
    "coach_build_info",
    "Always 1; the labels say which build runs.",
    ["version", "revision", "service"],
    multiprocess_mode="max",
)


DEGRADED = Gauge(
    "coach_degraded",
    "1 while the process runs degraded for the labelled reason (local_stores: production on "
    "local stores, STORES_DEGRADED), else 0.",
    ["reason"],
    multiprocess_mode="max",
)


def set_build_info(settings: Settings) -> None:
    """What every process says of itself from its start: its build, and whether it runs
    degraded."""
    BUILD_INFO.labels(
        version=settings.version, revision=settings.revision, service=settings.service_name
    ).set(1)
    DEGRADED.labels(reason="local_stores").set(1 if settings.stores_degraded else 0)


def process_registry() -> CollectorRegistry:
    """What this role's endpoint shows: every process's files in multiprocess mode, else this
    process's default registry (which also has the process and platform collectors)."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def render(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """(body, content type) of a scrape; a fresh registry per scrape in multiprocess mode."""
    return generate_latest(registry or process_registry()), CONTENT_TYPE_LATEST
