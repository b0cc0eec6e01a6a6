"""The one Celery app. Reliability settings follow Celery's own advice for idempotent tasks:
late acks, re-queue when a worker dies, one message prefetched at a time, and a visibility
timeout longer than any task may run, set identically everywhere it is read. coach.ask is
the exception: at most once, acked on receipt (worker/tasks.py says why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from celery import Celery, signals
from celery.app import trace
from celery.worker.consumer.consumer import Consumer
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

from coach import multiprocess
from coach.log import configure as configure_logging
from coach.settings import Settings, get_settings

QUEUE = "coach"
WORKER_SERVICE = "coach-worker"
METRICS_DIR = Path("/tmp/prometheus-worker")  # noqa: S108 - tmpfs in the image; PROMETHEUS_MULTIPROC_DIR overrides

log = structlog.get_logger(__name__)


def celery_config(settings: Settings) -> dict[str, Any]:
    visibility_timeout = settings.task_time_limit * 2 + 60
    transport = {
        "visibility_timeout": visibility_timeout,
        "socket_timeout": 5,
        "socket_connect_timeout": 3,
    }
    config: dict[str, Any] = {
        "task_default_queue": QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": max(settings.task_time_limit - 30, 5),
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "result_extended": True,
        "result_expires": 7 * 24 * 3600,
        "worker_soft_shutdown_timeout": 30,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        # Fail fast when Redis is down: the API answers 503 instead of hanging.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "timezone": "UTC",
        "enable_utc": True,
    }
    if settings.redis_url:
        config |= {"broker_url": settings.redis_url, "result_backend": settings.redis_url}
    else:  # embedded: tasks run in-process, results kept in memory for GET /tasks/{id}
        config |= {
            "task_always_eager": True,
            "task_eager_propagates": False,
            "task_store_eager_result": True,
            "result_backend": "cache+memory://",
            "broker_url": "memory://",
        }
    return config


_reconnect_cleanup = Consumer.on_connection_error_after_connected


def _survive_broker_loss(consumer: Any, exc: BaseException) -> None:
    """Celery 5.7 closes the broken connection after collecting it; kombu's Redis channel then
    restores unacked messages through a transport already gone (AttributeError), which kills
    the worker on every Redis restart. The messages stay in Redis' unacked set (restored after
    the visibility timeout; worker/redelivery.py re-sends sooner): reconnect all the same."""
    try:
        _reconnect_cleanup(consumer, exc)
    except AttributeError as error:
        log.warning("broken broker connection not closed cleanly", error=str(error)[:200])


Consumer.on_connection_error_after_connected = _survive_broker_loss
_connparams: Any = kombu_redis.Channel._connparams


def _connparams_of_open_transport(channel: Any, asynchronous: bool = False) -> Any:
    """A channel of the lost connection, used after Celery collected it (its message restore,
    a timer of its own): a connection error, which Celery handles, not an AttributeError that
    stops the worker."""
    if getattr(channel.connection, "client", None) is None:
        raise RedisConnectionError("the broker connection was closed")
    return _connparams(channel, asynchronous)


kombu_redis.Channel._connparams = _connparams_of_open_transport  # type: ignore[method-assign]


# Celery logs every task's return value on success; answers and snippets are user content
# that does not belong in logs. The outcome and the runtime are enough.
trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"


def make_celery(settings: Settings) -> Celery:
    app = Celery("coach", include=["worker.tasks"])
    app.conf.update(celery_config(settings))
    from worker.schedule import beat_schedule  # noqa: PLC0415 - schedule reads the tasks' names

    app.conf.beat_schedule = beat_schedule(settings)
    app.conf.beat_scheduler = "worker.beat:SingleBeatScheduler"
    from worker.heartbeat import ConsumerHeartbeat  # noqa: PLC0415

    app.steps["consumer"].add(ConsumerHeartbeat)
    return app


app = make_celery(get_settings())


# Nothing above imports prometheus_client: the worker must choose its multiprocess directory
# before the task modules (and the metrics with them) are imported, which is right here.
@signals.import_modules.connect
def _before_task_modules(**_: Any) -> None:
    """`celery worker` and `celery beat` import the task modules after this signal."""
    settings = get_settings()
    configure_logging(settings)  # early enough for Celery's own start-up warnings
    if settings.service_name == WORKER_SERVICE:
        # Pool processes write their metrics to files there, the parent serves their sum. Keyed
        # on the role, not the command: beat sends this signal too (so do `celery shell` and
        # `celery report`, which in a worker's container would empty its metric files).
        multiprocess.prepare(default=METRICS_DIR)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Connected, so Celery installs no handler of its own; LOG_LEVEL rules, not --loglevel."""
    configure_logging(get_settings())


@signals.celeryd_init.connect
def _no_banner(instance: Any, **_: Any) -> None:
    """Celery prints its banner straight to stdout, which is no JSON: it is logged instead."""
    instance.quiet = True


@signals.celeryd_after_setup.connect
def _log_startup(sender: str, instance: Any, **_: Any) -> None:
    log.info(
        "worker starting",
        hostname=sender,
        concurrency=instance.concurrency,
        queues=sorted(instance.app.amqp.queues),
        broker=instance.app.connection().as_uri(),  # the password masked
        tasks=sorted(name for name in instance.app.tasks if not name.startswith("celery.")),
    )
