"""/api/v1/tasks/{id}: the state of a background task."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path

from backend.auth import ReadKey
from backend.deps import RuntimeDep
from backend.routes.snippets import ERRORS
from backend.schemas import TaskOut
from coach import snippets
from coach.errors import NotFound

router = APIRouter(prefix="/tasks", tags=["tasks"])
# The tasks here index snippets. A code and a fixed sentence: the exception's text (hosts, SQL,
# paths) stays in the worker's log, and the snippet's own `error` gives the reason.
TASK_ERRORS = {
    "FAILURE": "IndexingFailed: the snippet could not be indexed; the snippet's error says why",
    "RETRY": "Retrying: a dependency was unavailable; indexing runs again shortly",
}


@router.get("/{task_id}", response_model=TaskOut, responses=ERRORS, summary="Task state")
async def get_task(
    task_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")],
    rt: RuntimeDep,
    key: ReadKey,
) -> TaskOut:
    from worker.celery_app import app  # noqa: PLC0415 - celery app on first use

    # Only ids handed out for this tenant's snippets are known (Celery would report PENDING
    # for ids it never saw); another tenant's task is as unknown as a made-up id.
    if await snippets.by_task(rt, task_id, tenant=key.tenant) is None:
        raise NotFound(f"no task {task_id}")
    result = app.AsyncResult(task_id)
    state = await asyncio.to_thread(lambda: result.state)
    out = TaskOut(id=task_id, state=state)
    if state == "SUCCESS":
        out.result = await asyncio.to_thread(lambda: result.result)
    else:
        out.error = TASK_ERRORS.get(state)
    return out
