"""Enqueueing work for the worker, with a broker outage mapped to a clear 503."""

from __future__ import annotations

import asyncio

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from coach.errors import Unavailable


async def index_snippet(snippet_id: str) -> str:
    from worker.tasks import index_snippet as task  # noqa: PLC0415 - celery app on first use

    try:
        # A thread: publishing blocks, and in embedded mode the task runs eagerly right here.
        result = await asyncio.to_thread(task.apply_async, args=[snippet_id])
    except (BrokerError, RedisError, ConnectionError, OSError) as exc:
        raise Unavailable(f"the task queue (redis) is unavailable; retry shortly ({exc})") from exc
    return str(result.id)
