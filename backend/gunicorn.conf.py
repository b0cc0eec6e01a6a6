"""Gunicorn settings for the backend: uvicorn workers, sizes from the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
worker_class = "uvicorn_worker.UvicornWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 20
keepalive = 5
# Recycle workers now and then: bounded memory growth, jittered so they do not restart at once.
max_requests = 2000
max_requests_jitter = 200
worker_tmp_dir = "/dev/shm"  # noqa: S108 - heartbeat files off the (read-only) root filesystem
accesslog = "-"
errorlog = "-"


def _forwarded_allow_ips() -> str:
    """Only nginx's network may say who the client is (TRUSTED_PROXIES, see
    backend/forwarded.py); any other peer's X-Forwarded-For is ignored."""
    from backend.forwarded import trusted_proxies  # noqa: PLC0415
    from coach.settings import get_settings  # noqa: PLC0415

    return trusted_proxies(get_settings().trusted_proxies)


forwarded_allow_ips = _forwarded_allow_ips()
# gunicorn's control socket defaults to $HOME, which is not writable (read-only root).
control_socket = "/tmp/gunicorn.ctl"  # noqa: S108 - the container's tmpfs

# gunicorn's own lines (master and workers) as JSON too, from its first line on.
logger_class = "backend.gunicorn_logger.JsonLogger"


def on_starting(server: Any) -> None:
    """Once, in the master, before any worker imports the app: the directory where every
    worker writes its metrics (one summed /metrics), emptied of an earlier run's files; then
    a bounded wait for the database schema, so that workers do not boot (and fail) before the
    migrate step has run (Swarm starts services in no particular order)."""
    import asyncio  # noqa: PLC0415

    from coach import multiprocess  # noqa: PLC0415 - before prometheus_client is imported

    multiprocess.prepare(default=Path("/tmp/prometheus-backend"))  # noqa: S108 - tmpfs

    from coach.migrate import wait_for_database  # noqa: PLC0415
    from coach.settings import get_settings  # noqa: PLC0415

    settings = get_settings()
    if not settings.embedded:
        asyncio.run(wait_for_database(settings, schema=True, timeout_s=settings.startup_wait))


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live* gauges go with it (none today; keeps a future one right)."""
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
