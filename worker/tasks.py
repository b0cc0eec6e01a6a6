"""Celery tasks: thin, named wrappers that open a runtime and call the core services."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import structlog
from celery import Task
from celery.exceptions import Reject

from coach import agent, failures, logfiles, reindexing, snippets
from coach.errors import CoachError, InternalError, NotFound
from coach.llm import LLMError
from coach.metrics import (
    INDEX_TASKS_RESENT,
    INDEX_TASKS_SKIPPED,
    LLM_UP,
    ORPHAN_OBJECTS_REMOVED,
    SNIPPETS_FAILED,
    SNIPPETS_INDEXED,
)
from coach.runtime import Runtime
from coach.settings import get_settings
from worker import (
    observability,  # noqa: F401 - connects the signal handlers where tasks live
    redelivery,
)
from worker.celery_app import app
from worker.deliveries import DeliveryCapped, send_once

log = structlog.get_logger(__name__)
T = TypeVar("T")


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


class IndexTask(DeliveryCapped):
    def on_delivery_limit(
        self, deliveries: int, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        snippet_id = args[0] if args else kwargs["snippet_id"]
        _fail(uuid.UUID(snippet_id), f"worker lost {deliveries} times while indexing")


@app.task(name="coach.index_snippet", bind=True, max_retries=8, base=IndexTask)
def index_snippet(self: Task, snippet_id: str) -> dict[str, Any]:
    """Dependencies that come back by themselves are retried with backoff; anything else fails
    the snippet. The snippet's `error` is a fixed reason users may read; the exception is in
    this log."""
    sid = uuid.UUID(snippet_id)
    settings = get_settings()
    retries = self.request.retries or 0
    lease = redelivery.Lease(
        None if self.request.is_eager else settings.redis_url,
        sid,
        task_id=self.request.id or snippet_id,
        retries=retries,
        ttl=settings.index_lease_ttl,
    )
    try:
        with lease.held():  # worker/redelivery.py: one run per snippet at a time
            try:
                chunks = _index(sid, settings.index_test_delay)
            except Exception as exc:
                if failures.is_unavailable(exc) and retries < self.max_retries:
                    lease.hand_to_retry(_countdown(retries))  # the sweep leaves it alone
                raise
    except redelivery.LeaseHeld:
        INDEX_TASKS_SKIPPED.inc()
        log.info("snippet being indexed by another run; message dropped", snippet_id=snippet_id)
        return {"snippet_id": snippet_id, "status": "running elsewhere"}
    except NotFound:
        log.warning("snippet vanished before indexing", snippet_id=snippet_id)
        return {"snippet_id": snippet_id, "status": "missing"}
    except Exception as exc:
        if not failures.is_unavailable(exc):
            log.exception("indexing failed", snippet_id=snippet_id)
            _fail(sid, _reason(exc))
            raise
        if retries >= self.max_retries:  # retry() would re-raise exc without failing the snippet
            log.error(
                "indexing gave up", snippet_id=snippet_id, retries=retries, error=str(exc)[:300]
            )
            _fail(sid, f"gave up after {retries} retries: {failures.dependency(exc)} unavailable")
            raise
        try:
            raise self.retry(exc=exc, countdown=_countdown(retries)) from exc
        except Reject:  # the retry could not be sent either (Redis down): the message is dropped
            _hand_to_sweep(sid)
            raise
    SNIPPETS_INDEXED.inc()
    return {"snippet_id": snippet_id, "status": "indexed", "chunks": chunks}


def _hand_to_sweep(sid: uuid.UUID) -> None:
    """Mark the snippet indexing with no lease, the state a dead run leaves: redeliver_lost
    re-sends it within a couple of minutes (a pending one would wait for requeue_pending, whose
    marker from the upload lasts an hour)."""
    try:
        run(lambda rt: redelivery.mark_indexing(rt, sid))
    except Exception as exc:  # the database too: the snippet stays as it was
        log.error("snippet left without a task", snippet_id=str(sid), error=str(exc)[:300])


def _countdown(retries: int) -> int:
    return int(min(2**retries, 60))


def _index(sid: uuid.UUID, test_delay: float) -> int:
    if test_delay > 0:  # INDEX_TEST_DELAY, a drill's knob: in flight, marked indexing
        if not run(lambda rt: redelivery.mark_indexing(rt, sid)):
            raise NotFound(f"no snippet {sid}")
        time.sleep(test_delay)
    return run(lambda rt: snippets.index(rt, sid))


def _reason(exc: Exception) -> str:
    """Why indexing failed, in words that carry no exception text."""
    if isinstance(exc, UnicodeDecodeError):
        return "indexing failed: the stored object is not valid UTF-8"
    if isinstance(exc, FileNotFoundError):
        return "indexing failed: the stored object is missing"
    if isinstance(exc, CoachError):  # our own messages, written for users
        return f"indexing failed: {exc.message}"
    return "indexing failed: an unexpected error (the worker's log has the details)"


def _fail(sid: uuid.UUID, message: str) -> None:
    try:
        run(lambda rt: snippets.mark_failed(rt, sid, message))
    except Exception:  # the database too may be what failed: the task fails all the same
        log.exception("snippet not marked failed", snippet_id=str(sid), reason=message)
        return
    SNIPPETS_FAILED.inc()


# At most once, unlike the index tasks: acked when it starts, never redelivered when a worker
# dies. An ask pays for an LLM call, and its API request has given up by the time a redelivery
# could run; the learner asks again instead.
@app.task(name="coach.ask", acks_late=False, reject_on_worker_lost=False)
def ask(
    question: str,
    snippet_id: str | None,
    top_k: int,
    trace_id: str | None = None,
    deadline: float | None = None,
    *,
    tenant: str,
    api_key_id: str | None = None,
) -> dict[str, Any]:
    """The coach agent runs on the workers: its LLM calls scale with them, and one request's
    trace runs from the API through this task into every agent step. Domain errors come back
    as data (type and message), so the API can answer with the right status. `deadline`: the
    Unix time the API stops waiting at; no step starts after it. `tenant` has no default: a
    message without one fails rather than reading some tenant's code."""
    sid = uuid.UUID(snippet_id) if snippet_id else None
    key_id = uuid.UUID(api_key_id) if api_key_id else None
    try:
        answer = run(
            lambda rt: agent.ask(
                rt,
                question,
                top_k=top_k,
                snippet_id=sid,
                tenant=tenant,
                api_key_id=key_id,
                trace_id=trace_id,
                deadline=deadline,
            )
        )
    except Exception as exc:
        # Whatever it was comes back as data in the API's terms (coach.failures); an exception
        # that escaped would be re-raised in the API as itself, past its error mapping.
        error = failures.as_coach_error(exc)
        if isinstance(error, InternalError):
            log.exception("ask failed", exc_info=exc)
        elif not isinstance(exc, CoachError):
            log.warning("ask failed", error=error.message, cause=str(exc)[:300])
        return {"error": type(error).__name__, "message": error.message}
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


@app.task(name="coach.remove_orphan_objects")
def remove_orphan_objects(min_age_s: float | None = None) -> dict[str, Any]:
    """Objects a refused upload left behind (stored, then no row): deleted once older than
    ORPHAN_OBJECT_MIN_AGE, never one a row names (coach.snippets.remove_orphan_objects)."""
    age = min_age_s if min_age_s is not None else get_settings().orphan_object_min_age
    sweep = run(lambda rt: snippets.remove_orphan_objects(rt, min_age_s=age))
    ORPHAN_OBJECTS_REMOVED.inc(sweep.removed)
    log.info(
        "orphan objects removed",
        removed=sweep.removed,
        old=sweep.old,
        scanned=sweep.scanned,
        min_age_s=age,
    )
    return {"removed": sweep.removed, "old": sweep.old, "scanned": sweep.scanned}


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
    """Safety net: a snippet committed but never enqueued (a crash in between) gets indexed,
    under the task id it already has, so the id its client holds stays valid; and never a
    second message while the first may still be queued (worker.deliveries.send_once)."""
    stale = run(lambda rt: snippets.stale_pending(rt, older_than_s=older_than_s))
    sent = 0
    for sid, known_id in stale:
        task_id = known_id or str(uuid.uuid4())
        if known_id is None:  # never enqueued: the id is stored before its message goes out
            run(partial(snippets.set_task, sid=sid, task_id=task_id))
        sent += send_once(index_snippet, task_id, [str(sid)])
    return {"requeued": sent, "still_queued": len(stale) - sent}


@app.task(name="coach.redeliver_lost")
def redeliver_lost() -> dict[str, Any]:
    """Snippets marked indexing whose lease lapsed (the run died with its worker): sent again
    under the task id their client holds, at most once per four lease TTLs each
    (worker/redelivery.py)."""
    settings = get_settings()
    url = settings.redis_url
    if url is None:
        return {"skipped": "embedded: tasks run in-process"}
    ttl = settings.index_lease_ttl
    candidates = run(lambda rt: redelivery.indexing(rt, older_than_s=ttl))
    lost = redelivery.unleased(url, candidates)
    sent = 0
    for sid, known_id in lost:
        task_id = known_id or str(uuid.uuid4())
        if known_id is None:
            run(partial(snippets.set_task, sid=sid, task_id=task_id))
        marker = f"{redelivery.RESENT_PREFIX}{sid}"
        sent += send_once(index_snippet, task_id, [str(sid)], marker=marker, ttl=ttl * 4)
    if sent:
        INDEX_TASKS_RESENT.inc(sent)
        log.warning("index tasks re-sent: the runs holding them died", resent=sent)
    return {"indexing": len(candidates), "lost": len(lost), "resent": sent}
