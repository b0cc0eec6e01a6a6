"""Enqueueing work for the worker, with a broker outage mapped to a clear 503."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import structlog
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from coach.errors import CoachError, InternalError, Unavailable
from coach.metrics import ASKS_SHED

log = structlog.get_logger(__name__)
T = TypeVar("T")
FIRST_POLL, LAST_POLL = 0.05, 0.5  # seconds between looks at the result backend
RETRY_AFTER_FULL = "5"
QUEUE_DOWN = "the task queue (redis) is unavailable; retry shortly"


def _queue_down(exc: BaseException) -> Unavailable:
    log.warning("task queue unavailable", error=str(exc)[:300])
    return Unavailable(QUEUE_DOWN)


async def index_snippet(snippet_id: str) -> str:
    from worker.deliveries import send_once  # noqa: PLC0415 - celery app on first use
    from worker.tasks import index_snippet as task  # noqa: PLC0415

    task_id = str(uuid.uuid4())
    try:
        # A thread: publishing blocks, and in embedded mode the task runs eagerly right here.
        # send_once marks the id as sent, so the re-queueing safety net leaves it alone.
        await asyncio.to_thread(send_once, task, task_id, [snippet_id])
    except (BrokerError, RedisError, ConnectionError, OSError) as exc:
        raise _queue_down(exc) from exc
    return task_id


def _subclasses(cls: type[CoachError]) -> list[type[CoachError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _subclasses(direct))]


# The worker's ask returns its error as data, by name; a name unknown here is a bug (500).
ERRORS: dict[str, type[CoachError]] = {e.__name__: e for e in _subclasses(CoachError)}


class AskGate:
    """How many asks one backend process waits for at once: the next is answered 503 with
    Retry-After at once instead of queueing behind them. Their blocking calls (publishing,
    each short look at the result backend, the whole agent in embedded mode where the task
    runs eagerly) run in a pool of their own, one thread per slot, so slow asks never take the
    default pool's threads that uploads and the other routes need."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiting = 0  # only the event loop's thread touches it
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="ask")

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.waiting >= self.limit:
            ASKS_SHED.inc()
            raise Unavailable(
                f"this backend is already waiting for {self.limit} answers; retry shortly",
                headers={"Retry-After": RETRY_AFTER_FULL},
            )
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1

    async def run(self, call: Callable[[], T]) -> T:
        """`call` in the pool, in this context, as asyncio.to_thread does: the request's log
        context and its span (the task's parent) go along."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, partial(context.run, call)
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def ask(
    question: str,
    *,
    snippet_id: str | None,
    top_k: int,
    trace_id: str | None,
    timeout: float,
    gate: AskGate,
    tenant: str,
    api_key_id: str | None,
) -> dict[str, Any]:
    """Run the coach agent on a worker and wait for its answer, at most `timeout` seconds."""
    from worker.tasks import ask as task  # noqa: PLC0415

    with gate.slot():
        # The worker starts nothing after the deadline (the agent's steps, an LLM attempt);
        # expires drops the message if no worker even picked it up by then.
        deadline = time.time() + timeout
        kwargs = {
            "question": question,
            "snippet_id": snippet_id,
            "top_k": top_k,
            "trace_id": trace_id,
            "deadline": deadline,
            "tenant": tenant,
            "api_key_id": api_key_id,
        }
        try:
            result = await gate.run(partial(task.apply_async, kwargs=kwargs, expires=timeout))
        except (BrokerError, RedisError, ConnectionError, OSError) as exc:
            raise _queue_down(exc) from exc
        try:
            answer = await _answer(gate, result, deadline, timeout)
        finally:
            # The answer is in the response and the questions table. A Redis blip here must
            # not turn a paid answer into a 503 (the result expires by itself anyway).
            with contextlib.suppress(BrokerError, RedisError, ConnectionError, OSError):
                await gate.run(result.forget)
    if "error" in answer:
        raise ERRORS.get(answer["error"], InternalError)(answer["message"])
    return answer


async def _answer(gate: AskGate, result: Any, deadline: float, timeout: float) -> dict[str, Any]:
    """The task's result once it is ready, by short looks at the result backend with sleeps of
    the event loop in between: no thread waits for the whole time."""
    pause = FIRST_POLL
    while not await gate.run(result.ready):
        left = deadline - time.time()
        if left <= 0:
            raise Unavailable(f"no worker answered within {timeout:.0f}s; retry shortly")
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, LAST_POLL)
    # Celery's guard against waiting inside a task is one flag for the whole process, which an
    # eager task (embedded mode) running in another thread sets: the API waits in no task.
    get = partial(result.get, timeout=LAST_POLL * 10, propagate=False, disable_sync_subtasks=False)
    answer = await gate.run(get)
    if not isinstance(answer, dict):
        # The task failed rather than answer with an error: its worker process died (an ask is
        # never redelivered) or it ran out of time.
        log.warning("ask task failed", task_id=result.id, error=repr(answer)[:300])
        raise Unavailable("the worker answering this question stopped; retry shortly")
    return answer
