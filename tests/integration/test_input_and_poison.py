"""Bad input and poison messages against real PostgreSQL, Redis and Celery worker processes:
NUL reaches no database and no LLM; a message that kills its worker every time ends failed
after MAX_TASK_DELIVERIES deliveries while the worker goes on; the re-queueing safety net keeps
the task id a client holds and sends one message, not two."""

from __future__ import annotations

import json
import os
import signal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from coach import failures
from coach.errors import InvalidInput
from coach.settings import Settings
from tests.support import processes
from tests.support.poison_tasks import QUEUE
from tests.support.processes import wait_until
from tests.support.samples import FIB
from tests.support.stack import Stack
from worker.celery_app import QUEUE as COACH_QUEUE
from worker.deliveries import DeliveryLimitReached


def queued_ids(broker: redis.Redis, queue: str = COACH_QUEUE) -> list[str]:
    """Task ids of the messages waiting in a queue (kombu's Redis transport: a list of JSON)."""
    return [json.loads(raw)["headers"]["id"] for raw in broker.lrange(queue, 0, -1)]


def snippet_count(app_stack: Stack) -> int:
    with app_stack.client() as http:
        return int(http.get("/api/v1/snippets").json()["total"])


def test_nul_in_a_title_or_question_is_422_stores_nothing_and_calls_no_llm(
    app_stack: Stack,
) -> None:
    calls = dict(app_stack.llm.control.calls)
    before = snippet_count(app_stack)
    with app_stack.client() as http:
        refused = [
            http.post(
                "/api/v1/snippets",
                json={"title": "nul\x00title", "language": "python", "content": FIB},
            ),
            http.post(
                "/api/v1/snippets",
                data={"title": "nul\x00title", "language": "python"},
                files={"file": ("fib.py", FIB.encode(), "text/x-python")},
            ),
            http.post("/api/v1/coach/ask", json={"question": "why\x00 is fib slow?"}),
        ]
    for response in refused:
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "InvalidInput"
    assert snippet_count(app_stack) == before
    assert app_stack.llm.control.calls == calls, "no embedding and no chat call was paid for"


async def test_a_value_postgresql_refuses_is_invalid_input_not_unavailable(
    settings: Settings,
) -> None:
    """Past the API's checks, the database's own refusal still maps to a 422, never a 503."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(Exception) as refused:
                await conn.execute(text("SELECT CAST(:v AS text)"), {"v": "a\x00b"})
    finally:
        await engine.dispose()
    assert failures.sqlstate(refused.value) == "22021"
    assert isinstance(failures.as_coach_error(refused.value), InvalidInput)


def test_requeue_keeps_the_task_id_and_sends_one_message(
    app_stack: Stack, broker: redis.Redis
) -> None:
    def requeue() -> dict[str, int]:
        return processes.run_task(app_stack.env, "requeue_pending(older_than_s=0)")

    app_stack.procs["worker"].stop()  # nothing consumes: messages stay where they are
    try:
        accepted = app_stack.upload("fib.py", FIB)
        task_id = accepted["task_id"]
        assert queued_ids(broker).count(task_id) == 1
        # The upload's message is still queued: nothing more is sent for it.
        assert requeue() == {"requeued": 0, "still_queued": 1}
        assert queued_ids(broker).count(task_id) == 1
        # Lost (Redis lost the message; its marker expired): sent again, once, under the same id.
        for raw in broker.lrange(COACH_QUEUE, 0, -1):
            if json.loads(raw)["headers"]["id"] == task_id:
                broker.lrem(COACH_QUEUE, 0, raw.decode() if isinstance(raw, bytes) else raw)
        broker.delete(f"coach:sent:{task_id}")
        assert requeue() == {"requeued": 1, "still_queued": 0}
        assert requeue() == {"requeued": 0, "still_queued": 1}
        assert queued_ids(broker).count(task_id) == 1
    finally:
        app_stack.restart_worker()
    snippet = app_stack.wait_indexed(accepted["id"])
    assert snippet["task_id"] == task_id
    with app_stack.client() as http:
        assert http.get(f"/api/v1/tasks/{task_id}").json()["state"] == "SUCCESS"


def test_indexing_that_kills_its_worker_every_time_fails_after_the_limit(
    app_stack: Stack,
) -> None:
    """The real index task on the stack's worker: its pool process killed mid-indexing on
    every delivery (like the OOM killer). After MAX_TASK_DELIVERIES (3) the next delivery
    fails the snippet with the reason, and the worker indexes the next upload."""
    control = app_stack.llm.control
    worker = app_stack.procs["worker"]

    def embed_calls() -> int:  # of this snippet's first chunk
        return sum(t.startswith("x0 = 0") for t in control.embedded_texts)

    base = embed_calls()
    control.embed_delay_s = 30.0  # each delivery hangs in the embeddings call, to be killed there
    try:
        accepted = app_stack.upload("oom.py", "\n".join(f"x{i} = {i}" for i in range(50)))
        for delivery in (1, 2, 3):
            wait_until(
                partial(lambda n: embed_calls() >= n, base + delivery),
                seconds=60,
                what=f"delivery {delivery} calling the embeddings API",
            )
            [child] = worker.children()
            os.kill(child, signal.SIGKILL)
            wait_until(
                partial(lambda old: worker.children() not in ([], [old]), child),
                seconds=60,
                what="the worker replacing its pool process",
            )

        def failed() -> bool:
            return bool(app_stack.snippet(accepted["id"])["status"] == "failed")

        wait_until(failed, seconds=60, what="the snippet failed", interval=0.5)
    finally:
        control.embed_delay_s = 0.0
    snippet = app_stack.snippet(accepted["id"])
    assert snippet["error"] == "worker lost 3 times while indexing"
    assert embed_calls() == base + 3, "the 4th delivery did not index"
    assert worker.alive()
    app_stack.wait_indexed(app_stack.upload("fib.py", FIB)["id"])


def test_a_message_that_kills_its_worker_is_dropped_and_the_worker_goes_on(
    app_stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    env = {
        **app_stack.env,
        "MAX_TASK_DELIVERIES": "3",
        "WORKER_METRICS_PORT": "0",
        "WORKER_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
    }
    proc = processes.worker(
        env, app_stack.logdir, name="poison", app="tests.support.poison_tasks", queue=QUEUE
    )
    client = Celery("poison-test", broker=settings.redis_url, backend=settings.redis_url)
    deliveries = tmp_path / "deliveries"
    try:
        result: Any = client.send_task("tests.poison", args=[str(deliveries)], queue=QUEUE)
        wait_until(
            lambda: result.state == "FAILURE", seconds=120, what="the poison task ending failed"
        )
        assert isinstance(result.result, DeliveryLimitReached)
        pids = deliveries.read_text().split()
        assert len(pids) == 3, "the body ran on each of the 3 deliveries, not on the 4th"
        assert len(set(pids)) == 3, "each delivery ran in a fresh pool process"
        assert "message dropped after repeated deliveries" in proc.tail(400)
        echo = client.send_task("tests.echo", args=["still serving"], queue=QUEUE)
        assert echo.get(timeout=60) == "still serving"
        assert proc.alive()
    finally:
        proc.stop()
        client.close()
