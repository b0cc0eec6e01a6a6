"""Deliveries of one task message, counted and capped; and one message per task id.

Poison messages: tasks are acknowledged late and re-queued when their worker dies, so a message
whose task kills the process running it (a crash in a C extension, the OOM killer) would be
delivered for ever. `DeliveryCapped` counts each delivery in Redis before the task runs, keyed
by task id and retry number (a retry is a new message, a redelivery the same one again). Past
MAX_TASK_DELIVERIES the body does not run: `on_delivery_limit` records why, the task ends
FAILURE with `DeliveryLimitReached`, and the failure acknowledges the message, which is dropped;
the worker goes on with the next one.

`send_once` keeps the re-queueing safety net from sending a second message for a task whose
first one may still be queued: a marker per task id in Redis, set with NX when a message is
sent, lasting SENT_TTL_S.
"""

from __future__ import annotations

import contextlib
from functools import cache
from typing import Any

import redis
import structlog
from celery import Task

from coach.settings import get_settings

log = structlog.get_logger(__name__)
COUNT_PREFIX = "coach:deliveries:"
# Longer than any cycle of redeliveries: a whole worker killed waits for the visibility timeout.
COUNT_TTL_S = 7 * 24 * 3600
SENT_PREFIX = "coach:sent:"
# How long a sent message is taken to be possibly still queued. Past it, a snippet still pending
# gets a second message: a lost one is re-sent within the hour, and a message that did wait
# longer is indexed twice, which is idempotent (point ids derive from content).
SENT_TTL_S = 3600


class DeliveryLimitReached(Exception):
    """The message was delivered MAX_TASK_DELIVERIES times without finishing: dropped."""


@cache
def _redis(url: str) -> redis.Redis:
    # redis-py's pool notices a fork and reconnects: safe in prefork pool processes.
    return redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)


def _count_key(task_id: str, retries: int) -> str:
    return f"{COUNT_PREFIX}{task_id}:{retries}"


class DeliveryCapped(Task):  # type: ignore[misc]  # celery ships no type hints
    """Base class of a task whose message must not be delivered more than MAX_TASK_DELIVERIES
    times. Subclasses override `on_delivery_limit` to record the failure where users see it."""

    # Expected, not a bug: Celery logs it in one line, without a traceback.
    throws = (DeliveryLimitReached,)

    def deliveries(self) -> int:
        """Deliveries of this message so far, this one included; 1 where nothing counts them
        (eager tasks, or a call outside a worker)."""
        url = get_settings().redis_url
        request = self.request
        if url is None or request.is_eager or not request.id:
            return 1
        key = _count_key(request.id, request.retries or 0)
        try:
            with _redis(url).pipeline() as pipe:  # one round trip, one transaction
                pipe.incr(key)
                pipe.expire(key, COUNT_TTL_S)
                count, _ = pipe.execute()
        except redis.RedisError as exc:
            # The message came from this Redis a moment ago: run it rather than lose it.
            log.warning("delivery not counted", task_id=request.id, error=str(exc)[:200])
            return 1
        return int(count)

    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Runs in the pool process before the body; what it raises fails the task there."""
        deliveries = self.deliveries()
        limit = get_settings().max_task_deliveries
        if deliveries <= limit:
            return
        log.error(
            "message dropped after repeated deliveries",
            task=self.name,
            task_id=task_id,
            deliveries=deliveries - 1,
            limit=limit,
        )
        self.on_delivery_limit(deliveries - 1, args, kwargs)
        raise DeliveryLimitReached(f"{self.name} delivered {deliveries - 1} times, not finished")

    def on_delivery_limit(
        self, deliveries: int, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Record that the task gave up after `deliveries` deliveries that never finished."""

    def after_return(  # noqa: PLR0917 - Celery's signature
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        """Finished (or retrying under a new message): this message's count is done with."""
        url = get_settings().redis_url
        if url is not None and not self.request.is_eager:
            with contextlib.suppress(redis.RedisError):  # else the key expires by itself
                _redis(url).delete(_count_key(task_id, self.request.retries or 0))
        super().after_return(status, retval, task_id, args, kwargs, einfo)


def send_once(
    task: Task, task_id: str, args: list[Any], *, marker: str | None = None, ttl: int = SENT_TTL_S
) -> bool:
    """Send `task` under `task_id` unless a message for that id (or for `marker`, when given)
    went out less than `ttl` seconds ago (it may still be queued): True if this call sent one.
    Redis errors propagate."""
    url = get_settings().redis_url
    marker = SENT_PREFIX + (marker or task_id)
    if url is not None and not _redis(url).set(marker, "1", nx=True, ex=ttl):
        return False
    try:
        task.apply_async(args=args, task_id=task_id)
    except BaseException:
        if url is not None:  # nothing went out: the next attempt may send
            with contextlib.suppress(redis.RedisError):
                _redis(url).delete(marker)
        raise
    return True
