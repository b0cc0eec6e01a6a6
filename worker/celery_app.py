"""The one Celery app. Reliability settings follow Celery's own advice for idempotent tasks:
late acks, re-queue when a worker dies, one message prefetched at a time, and a visibility
timeout longer than any task may run, set identically everywhere it is read."""

from __future__ import annotations

from typing import Any

from celery import Celery

from coach.settings import Settings, get_settings

QUEUE = "coach"


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
