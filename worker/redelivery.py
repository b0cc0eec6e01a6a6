"""A killed worker's index tasks run again within about two minutes: a lease per snippet and a
sweep that re-sends what no live run holds.

Why not the broker alone: Redis hands an unacknowledged message back only after the transport's
visibility timeout, which must outlast the longest task (worker/celery_app.py: 660 s), or a
slow but healthy task would be delivered twice. That stays as the last resort; this is the
fast path.

- The lease: while an index task works on a snippet it holds `coach:lease:index:<snippet id>`
  in Redis, set with NX and a TTL of INDEX_LEASE_TTL seconds, renewed by a thread every third of
  it. The run holding it marks the snippet `indexing`. A run that finds the lease held by
  another (a redelivery, a re-sent message) does not start: the holder finishes the snippet,
  and if the holder dies its lease lapses and the sweep below sends the snippet again. So no
  two runs index one snippet at the same time. A task that waits to retry (a dependency down)
  leaves a lease of its own for the countdown plus one TTL, which only its retry may take over:
  the sweep leaves it alone meanwhile.
- The sweep (`coach.redeliver_lost`, every minute by beat): snippets `indexing` whose lease is
  gone were being indexed by a process that no longer runs. Each is re-sent under the task id
  its client already holds, at most once per INDEX_LEASE_TTL * 4 seconds
  (worker.deliveries.send_once with a marker of its own), and counted in
  coach_index_tasks_resent_total. Indexing is idempotent (point ids derive from content), so
  the old message, when Redis finally redelivers it, is harmless: it re-indexes or, while a run
  holds the lease, is dropped (coach_index_tasks_skipped_total).

A worker killed at T: its leases lapse by T + INDEX_LEASE_TTL, the next sweep (each minute)
re-sends, and the first free worker runs it. Snippets still `pending` (queued, never started)
are the broker's: their messages are still queued, and coach.requeue_pending covers a lost one.
Redelivery counts (worker.deliveries) still apply: a snippet whose run dies
MAX_TASK_DELIVERIES times is marked failed.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import redis
import structlog
from sqlalchemy import select

from coach.db import session_scope
from coach.models import Snippet, SnippetStatus
from coach.runtime import Runtime
from worker.deliveries import _redis

log = structlog.get_logger(__name__)
LEASE_PREFIX = "coach:lease:index:"
RESENT_PREFIX = "resend:"  # send_once marker: coach:sent:resend:<snippet id>
RETRY_HOLDER = "retry:{task_id}:{retries}"  # the lease value a waiting retry holds

# Take the lease if it is free, or if it is the one its own retry was promised; else keep it.
_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  return 1
end
return 0
"""
# Renew or hand over only a lease this run holds.
_REPLACE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_key(snippet_id: uuid.UUID | str) -> str:
    return f"{LEASE_PREFIX}{snippet_id}"


def died_here(holder: str) -> bool:
    """Whether a lease's holder (`host:pid:...`, see Lease.token) ran on this host, in this
    process namespace, and no longer runs. Elsewhere, or a pid alive again (reused after a
    container restart), it counts as alive: that lease lapses by its TTL and the sweep acts."""
    host, _, rest = holder.partition(":")
    pid = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class LeaseHeld(Exception):
    """Another run holds this snippet's lease: it indexes the snippet, this one does not."""


class Lease:
    """One run's lease on one snippet; `held` renews it from a thread until the block ends."""

    def __init__(
        self, url: str | None, snippet_id: uuid.UUID, *, task_id: str, retries: int, ttl: int
    ) -> None:
        # None: embedded, tasks run eagerly in the one process and nothing needs a lease.
        self.client: redis.Redis | None = _redis(url) if url is not None else None
        self.key = lease_key(snippet_id)
        self.ttl = ttl
        self.token = f"{socket.gethostname()}:{os.getpid()}:{task_id}:{uuid.uuid4().hex[:8]}"
        self.task_id = task_id
        self.retries = retries
        self._stop = threading.Event()
        self._handover: str | None = None
        self._handover_ttl = ttl

    def acquire(self) -> bool:
        if self.client is None:
            return True
        own_retry = RETRY_HOLDER.format(task_id=self.task_id, retries=self.retries)
        if self.client.eval(_ACQUIRE, 1, self.key, self.token, own_retry, self.ttl):
            return True
        # A pool process killed mid-run (an OOM kill) is replaced at once and its message
        # redelivered at once: its lease would make that redelivery wait a whole TTL and the
        # sweep. The holder ran here and is gone: take its place (compare-and-set).
        holder = self.client.get(self.key)
        held_by = holder.decode() if isinstance(holder, bytes) else holder
        if held_by is not None and died_here(held_by):
            return bool(self.client.eval(_REPLACE, 1, self.key, held_by, self.token, self.ttl))
        return False

    def _renew(self) -> None:
        assert self.client is not None
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.client.eval(_REPLACE, 1, self.key, self.token, self.token, self.ttl):
                    log.warning("index lease lost while running", key=self.key)
                    return
            except redis.RedisError as exc:  # Redis away: the run goes on, the lease may lapse
                log.warning("index lease not renewed", key=self.key, error=str(exc)[:200])

    def hand_to_retry(self, countdown: float) -> None:
        """Keep the snippet for this task's next attempt, `countdown` seconds away."""
        self._handover = RETRY_HOLDER.format(task_id=self.task_id, retries=self.retries + 1)
        self._handover_ttl = int(countdown) + self.ttl

    @contextmanager
    def held(self) -> Iterator[Lease]:
        if not self.acquire():
            raise LeaseHeld(self.key)
        if self.client is None:
            yield self
            return
        renewer = threading.Thread(target=self._renew, name="index-lease", daemon=True)
        renewer.start()
        try:
            yield self
        finally:
            self._stop.set()
            renewer.join(timeout=5)
            try:
                if self._handover is not None:
                    args = (self.token, self._handover, self._handover_ttl)
                    self.client.eval(_REPLACE, 1, self.key, *args)
                else:
                    self.client.eval(_RELEASE, 1, self.key, self.token)
            except redis.RedisError as exc:  # it lapses by itself within one TTL
                log.warning("index lease not released", key=self.key, error=str(exc)[:200])


async def mark_indexing(rt: Runtime, snippet_id: uuid.UUID) -> bool:
    """The lease holder's claim, visible to the sweep; False if the snippet is gone."""
    async with session_scope(rt.sessions) as session:
        snippet = await session.get(Snippet, snippet_id)
        if snippet is None:
            return False
        snippet.status = SnippetStatus.indexing
        return True


async def indexing(rt: Runtime, *, older_than_s: float) -> list[tuple[uuid.UUID, str | None]]:
    """(id, task id) of snippets marked indexing at least `older_than_s` seconds ago."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    async with rt.sessions() as session:
        rows = await session.execute(
            select(Snippet.id, Snippet.task_id).where(
                Snippet.status == SnippetStatus.indexing, Snippet.updated_at < cutoff
            )
        )
        return [(sid, task_id) for sid, task_id in rows.all()]


def unleased(
    url: str, candidates: list[tuple[uuid.UUID, str | None]]
) -> list[tuple[uuid.UUID, str | None]]:
    """The candidates no live run holds a lease on (one round trip)."""
    if not candidates:
        return []
    with _redis(url).pipeline(transaction=False) as pipe:
        for sid, _ in candidates:
            pipe.exists(lease_key(sid))
        held = pipe.execute()
    return [c for c, exists in zip(candidates, held, strict=True) if not exists]
