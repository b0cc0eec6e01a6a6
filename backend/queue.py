"""Enqueueing work for the worker, with a broker outage mapped to a clear 503."""

from __future__ import annotations

import asyncio
from typing import Any

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from coach.errors import CoachError, InvalidInput, NotFound, Unavailable


async def index_snippet(snippet_id: str) -> str:
    from worker.tasks import index_snippet as task  # noqa: PLC0415 - celery app on first use

    try:
        # A thread: publishing blocks, and in embedded mode the task runs eagerly right here.
        result = await asyncio.to_thread(task.apply_async, args=[snippet_id])
    except (BrokerError, RedisError, ConnectionError, OSError) as exc:
        raise Unavailable(f"the task queue (redis) is unavailable; retry shortly ({exc})") from exc
    return str(result.id)


ERRORS: dict[str, type[CoachError]] = {e.__name__: e for e in (InvalidInput, NotFound, Unavailable)}


async def ask(
    question: str, *, snippet_id: str | None, top_k: int, trace_id: str | None, timeout: float
) -> dict[str, Any]:
    """Run the coach agent on a worker and wait for its answer, at most `timeout` seconds."""
    from celery.exceptions import TimeoutError as ResultTimeout  # noqa: PLC0415

    from worker.tasks import ask as task  # noqa: PLC0415

    try:
        # Expires: if no worker picks it up in time, nobody waits for it any more.
        result = await asyncio.to_thread(
            task.apply_async, args=[question, snippet_id, top_k, trace_id], expires=timeout
        )
    except (BrokerError, RedisError, ConnectionError, OSError) as exc:
        raise Unavailable(f"the task queue (redis) is unavailable; retry shortly ({exc})") from exc
    try:
        answer: dict[str, Any] = await asyncio.to_thread(result.get, timeout=timeout)
    except ResultTimeout as exc:
        raise Unavailable(f"no worker answered within {timeout:.0f}s; retry shortly") from exc
    finally:
        result.forget()  # the answer is in the response and the questions table
    if "error" in answer:
        raise ERRORS.get(answer["error"], Unavailable)(answer["message"])
    return answer
