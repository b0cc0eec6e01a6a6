"""Celery tasks: thin, named wrappers that open a runtime and call the core services."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import structlog
from celery import Task
from celery.exceptions import MaxRetriesExceededError
from sqlalchemy.exc import DBAPIError, OperationalError

from coach import agent, logfiles, reindexing, snippets
from coach.errors import CoachError, NotFound, Unavailable
from coach.llm import LLMError
from coach.metrics import LLM_UP, SNIPPETS_FAILED, SNIPPETS_INDEXED
from coach.runtime import Runtime
from coach.settings import get_settings
from worker import observability  # noqa: F401 - connects the signal handlers where tasks live
from worker.celery_app import app

log = structlog.get_logger(__name__)
T = TypeVar("T")
# Dependencies that come back by themselves: retry with backoff instead of failing the snippet.
TRANSIENT: tuple[type[BaseException], ...] = (
    Unavailable,
    OperationalError,
    DBAPIError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def run(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run async core code in a fresh loop with a runtime of its own (no pooled connection
    may outlive the loop that opened it; prefork children each get their own)."""

    async def main() -> T:
        rt = Runtime.create(get_settings(), pooled=False)
        try:
            return await work(rt)
        finally:
            await rt.close()

    return asyncio.run(main())


@app.task(name="coach.index_snippet", bind=True, max_retries=8)
def index_snippet(self: Task, snippet_id: str) -> dict[str, Any]:
    sid = uuid.UUID(snippet_id)
    try:
        chunks = run(lambda rt: snippets.index(rt, sid))
    except NotFound:
        log.warning("snippet vanished before indexing", snippet_id=snippet_id)
        return {"snippet_id": snippet_id, "status": "missing"}
    except TRANSIENT as exc:
        try:
            raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60))
        except MaxRetriesExceededError:
            _fail(sid, f"gave up after {self.request.retries} retries: {exc}")
            raise
    except Exception as exc:
        _fail(sid, f"{type(exc).__name__}: {exc}")
        raise
    SNIPPETS_INDEXED.inc()
    return {"snippet_id": snippet_id, "status": "indexed", "chunks": chunks}


def _fail(sid: uuid.UUID, message: str) -> None:
    run(lambda rt: snippets.mark_failed(rt, sid, message))
    SNIPPETS_FAILED.inc()


@app.task(name="coach.ask")
def ask(
    question: str, snippet_id: str | None, top_k: int, trace_id: str | None = None
) -> dict[str, Any]:
    """The coach agent runs on the workers: its LLM calls scale with them, and one request's
    trace runs from the API through this task into every agent step. Domain errors come back
    as data (type and message), so the API can answer with the right status."""
    sid = uuid.UUID(snippet_id) if snippet_id else None
    try:
        answer = run(
            lambda rt: agent.ask(rt, question, top_k=top_k, snippet_id=sid, trace_id=trace_id)
        )
    except CoachError as exc:
        return {"error": type(exc).__name__, "message": exc.message}
    except LLMError as exc:
        return {"error": "Unavailable", "message": f"the LLM API is unavailable: {exc}"}
    return answer.to_dict()


@app.task(name="coach.reindex", bind=True, max_retries=3)
def reindex(self: Task) -> dict[str, Any]:
    try:
        result = run(reindexing.reindex)
    except reindexing.ReindexBusy as exc:  # one is already running (the CLI, or another task)
        log.warning("reindex skipped", reason=str(exc))
        return {"skipped": str(exc)}
    return {
        "collection": result.collection,
        "previous": result.previous,
        "points": result.points,
        "resumed_from": result.resumed_from,
        "caught_up": result.caught_up,
        "points_per_second": round(result.points_per_second, 1),
    }


@app.task(name="coach.clean_logs")
def clean_logs() -> dict[str, Any]:
    """Rotated siblings of this process's LOG_FILE: older than LOG_RETENTION_DAYS, then the
    oldest until LOG_MAX_TOTAL_BYTES; never the live file (coach.logfiles)."""
    settings = get_settings()
    if settings.log_file is None:
        return {"skipped": "LOG_FILE is not set"}
    result = logfiles.clean(
        settings.log_file,
        older_than_days=settings.log_retention_days,
        max_total_bytes=settings.log_max_total_bytes,
    )
    log.info("rotated logs cleaned", files=len(result.deleted), freed_bytes=result.freed_bytes)
    return {
        "deleted": [str(f.path) for f, _ in result.deleted],
        "freed_bytes": result.freed_bytes,
        "remaining_bytes": result.remaining_bytes,
    }


@app.task(name="coach.cleanup")
def cleanup(older_than_days: int | None = None) -> dict[str, Any]:
    days = older_than_days or get_settings().question_retention_days
    deleted = run(lambda rt: agent.purge_questions(rt, older_than_days=days))
    return {"questions_deleted": deleted}


@app.task(name="coach.llm_probe")
def llm_probe() -> dict[str, Any]:
    async def probe(rt: Runtime) -> str | None:
        try:
            await asyncio.to_thread(rt.llm.probe)
        except LLMError as exc:
            return str(exc)
        return None

    error = run(probe)
    LLM_UP.set(1 if error is None else 0)
    return {"available": error is None, "error": error}


@app.task(name="coach.requeue_pending")
def requeue_pending(older_than_s: float = 300) -> dict[str, Any]:
    """Safety net: a snippet committed but never enqueued (crash in between) gets indexed."""
    stale = run(lambda rt: snippets.stale_pending(rt, older_than_s=older_than_s))
    for sid in stale:
        task_id = str(index_snippet.delay(str(sid)).id)
        run(partial(snippets.set_task, sid=sid, task_id=task_id))
    return {"requeued": len(stale)}
