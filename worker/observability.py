"""The worker's logs, metrics and traces, through Celery's signals.

- Every task's log lines carry task_id and task_name (bound at task_prerun; the context
  is cleared after each task).
- coach_celery_tasks_total{task,state} and coach_celery_task_duration_seconds, wherever tasks
  run (the worker's pool processes, or the backend itself in embedded mode, where tasks run
  eagerly).
- The worker's parent process serves /metrics on WORKER_METRICS_PORT: the sum of its pool
  processes' files (multiprocess mode, see worker.celery_app) plus coach_celery_queue_messages
  read from Redis at scrape time.
- Tracing starts in each pool process after the fork (an exporter thread does not survive
  one), or in the worker itself when its pool does not fork, and in beat.

Imported by worker.tasks, so that whatever process has the tasks has these handlers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import structlog
from celery import Task, signals
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from redis import Redis
from redis.exceptions import RedisError

from coach import metrics, tracing
from coach.multiprocess import multiprocess_dir
from coach.settings import Settings, get_settings
from worker.celery_app import QUEUE

log = structlog.get_logger(__name__)
# Celery's state after a run -> the state label; other outcomes (REJECTED, IGNORED) are not runs.
FINISHED = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}
_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started(task_id: str, task: Task, **_: Any) -> None:
    # Bound on top of what is there: an eager task (embedded mode) keeps its request's ids.
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=task.name)
    _started[task_id] = time.perf_counter()
    metrics.CELERY_TASKS.labels(task=task.name, state="started").inc()


@signals.task_postrun.connect
def _task_finished(task_id: str, task: Task, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        metrics.CELERY_TASK_DURATION.labels(task=task.name).observe(time.perf_counter() - started)
    if state in FINISHED:
        metrics.CELERY_TASKS.labels(task=task.name, state=FINISHED[state]).inc()
    structlog.contextvars.clear_contextvars()  # nothing a task bound leaks into the next one


class QueueLengthCollector(Collector):
    """coach_celery_queue_messages{queue}: LLEN of each queue's Redis list, at scrape time. A
    custom collector, so it lives on the serving registry (multiprocess files cannot hold it).
    Every worker replica reports the same value: aggregate with max, not sum."""

    def __init__(self, client: Redis, queues: Sequence[str]) -> None:
        self._client, self._queues = client, tuple(queues)

    def describe(self) -> list[Any]:
        return []  # no Redis round trip when registering

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "coach_celery_queue_messages", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        for queue in self._queues:
            try:
                family.add_metric([queue], float(self._client.llen(queue)))
            except RedisError as exc:  # a scrape must still answer; the series goes absent
                log.warning("queue length unavailable", queue=queue, error=str(exc))
        yield family


def worker_registry(settings: Settings) -> CollectorRegistry:
    registry = metrics.process_registry()
    if settings.redis_url is not None:
        client = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        registry.register(QueueLengthCollector(client, [QUEUE]))
    return registry


def _forks(worker: Any) -> bool:
    pool = worker.pool_cls  # an alias or the class itself, depending on who set it
    name = pool if isinstance(pool, str) else f"{pool.__module__}.{pool.__qualname__}"
    return "prefork" in name


def _trace_this_process() -> None:
    if tracing.configure(get_settings()):
        tracing.instrument_libraries()


@signals.worker_init.connect
def _worker_started(sender: Any, **_: Any) -> None:
    """In the worker's parent process, before the pool starts."""
    settings = get_settings()
    metrics.set_build_info(settings)
    forks = _forks(sender)
    if not forks:
        _trace_this_process()
    elif multiprocess_dir() is None:
        log.error(
            "PROMETHEUS_MULTIPROC_DIR is unset (is SERVICE_NAME coach-worker?): the pool "
            "processes' metrics will be missing from this worker's endpoint"
        )
    if settings.worker_metrics_port:
        try:
            start_http_server(settings.worker_metrics_port, registry=worker_registry(settings))
        except OSError as exc:  # another worker on this host has the port: work on, unscraped
            log.error("worker metrics endpoint not started", error=str(exc))
        else:
            log.info("worker metrics endpoint started", port=settings.worker_metrics_port)


@signals.worker_process_init.connect
def _pool_process_started(**_: Any) -> None:
    _trace_this_process()


@signals.worker_process_shutdown.connect
def _pool_process_stopping(**_: Any) -> None:
    tracing.force_flush()  # pool processes leave with os._exit: no atexit export


@signals.beat_init.connect
def _beat_started(**_: Any) -> None:
    metrics.set_build_info(get_settings())
    _trace_this_process()
