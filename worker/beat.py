"""Beat's scheduler: the schedule persists in a file on a volume (celery's shelve), and a Redis
lock makes sure only one beat sends it, even when a second one starts during a rolling update
or by mistake. The one without the lock waits, then takes over if the holder dies."""

from __future__ import annotations

import os
import socket
from typing import Any

import structlog
from celery.beat import PersistentScheduler
from redis import Redis
from redis.lock import Lock

from coach.settings import get_settings
from worker.heartbeat import touch

log = structlog.get_logger(__name__)
LOCK_NAME = "coach:beat:lock"


class SingleBeatScheduler(PersistentScheduler):  # type: ignore[misc]
    """`celery beat --scheduler worker.beat:SingleBeatScheduler --schedule /var/lib/beat/db`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._settings = get_settings()
        self._lock: Lock | None = None
        self._ttl = self._settings.beat_lock_ttl
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        url = self._settings.redis_url
        if url is not None:
            client = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
            self._lock = client.lock(LOCK_NAME, timeout=self._ttl, thread_local=False)
            holder = f"{socket.gethostname()}:{os.getpid()}"
            while not self._lock.acquire(blocking=True, blocking_timeout=self._ttl, token=holder):
                log.warning("another beat holds the schedule lock; waiting", lock=LOCK_NAME)
            log.info("beat lock acquired", lock=LOCK_NAME, holder=holder)
        super().setup_schedule()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if self._lock is not None and not self._lock.extend(self._ttl, replace_ttl=True):
            raise SystemExit("beat lost its schedule lock; exiting so only one beat runs")
        touch(self._settings.worker_heartbeat_file)
        # Tick well within the lock's TTL so the lock and the heartbeat stay fresh.
        return min(float(super().tick(*args, **kwargs)), self._ttl / 3, 10.0)

    def close(self) -> None:
        super().close()
        if self._lock is not None:
            try:
                self._lock.release()
            except Exception:
                log.info("beat lock already expired at shutdown", lock=LOCK_NAME)
