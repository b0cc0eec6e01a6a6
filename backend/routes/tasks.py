"""/api/v1/tasks/{id}: the state of a background task."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path

from backend.deps import RuntimeDep
from backend.routes.snippets import ERRORS
from backend.schemas import TaskOut
from coach import snippets
from coach.errors import NotFound

router = APIRouter(prefix="/tasks", tags=["tasks"])


@router.get("/{task_id}", response_model=TaskOut, responses=ERRORS, summary="Task state")
async def get_task(
    task_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")],
    rt: RuntimeDep,
) -> TaskOut:
    from worker.celery_app import app  # noqa: PLC0415 - celery app on first use

    result = app.AsyncResult(task_id)
    state = await asyncio.to_thread(lambda: result.state)
    # Celery reports PENDING for ids it never saw: only ids we handed out are known.
    if state == "PENDING" and await snippets.by_task(rt, task_id) is None:
        raise NotFound(f"no task {task_id}")
    out = TaskOut(id=task_id, state=state)
    if state == "SUCCESS":
        out.result = await asyncio.to_thread(lambda: result.result)
    elif state in {"FAILURE", "RETRY"}:
        out.error = repr(await asyncio.to_thread(lambda: result.result))[:500]
    return out
