"""The index lease and the sweep that re-sends a dead run's snippets (worker/redelivery.py),
against the real Redis and PostgreSQL of the app stack and its real worker process: a lease is
exclusive and outlives its TTL while renewed; a lapsed one frees the snippet; the sweep re-sends
a snippet left `indexing` without a lease once per marker TTL, under its task id, and leaves a
leased one alone; a run that finds the lease held indexes nothing."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import psycopg
import pytest
import redis

from coach.settings import Settings
from tests.support import processes
from tests.support.processes import wait_until
from tests.support.samples import FIB
from tests.support.stack import Stack
from worker import redelivery
from worker.celery_app import QUEUE
from worker.deliveries import SENT_PREFIX

TTL = 3  # the least INDEX_LEASE_TTL allows: renewals come each second


def lease(settings: Settings, sid: uuid.UUID, task_id: str, retries: int = 0) -> redelivery.Lease:
    return redelivery.Lease(settings.redis_url, sid, task_id=task_id, retries=retries, ttl=TTL)


def queued(broker: redis.Redis, task_id: str) -> int:
    """Messages for `task_id` waiting in the queue (kombu's Redis transport: a list of JSON)."""
    return sum(json.loads(raw)["headers"]["id"] == task_id for raw in broker.lrange(QUEUE, 0, -1))


def answers(broker: redis.Redis) -> bool:
    try:
        return bool(broker.ping())
    except redis.RedisError:
        return False


def sweep(app_stack: Stack) -> dict[str, Any]:
    """One run of the beat task, in a process of its own with the stack's settings."""
    return processes.run_task(app_stack.env, "redeliver_lost()")


def mark_indexing_long_ago(app_stack: Stack, sid: str) -> None:
    """What a run killed mid-task leaves behind: the snippet `indexing` since long before."""
    env = app_stack.env
    with psycopg.connect(
        host="127.0.0.1",
        port=int(env["POSTGRES_PORT"]),
        user="coach",
        dbname="coach",
        password=env["POSTGRES_PASSWORD"],
    ) as conn:
        conn.execute(
            "UPDATE snippets SET status = 'indexing', updated_at = now() - interval '1 hour' "
            "WHERE id = %s",
            (sid,),
        )


def test_a_lease_is_exclusive_and_kept_while_renewed(settings: Settings) -> None:
    sid = uuid.uuid4()
    with lease(settings, sid, "first").held():
        with pytest.raises(redelivery.LeaseHeld), lease(settings, sid, "second").held():
            pytest.fail("a second run entered a held lease")
        time.sleep(TTL * 2)  # twice the TTL: only the renewals keep it
        assert not lease(settings, sid, "second").acquire()
    assert lease(settings, sid, "second").acquire(), "released when the run ended"


def test_a_lease_nobody_renews_lapses(settings: Settings) -> None:
    sid = uuid.uuid4()
    assert lease(settings, sid, "killed").acquire()  # taken, then its process died
    assert not lease(settings, sid, "other").acquire()
    wait_until(
        lambda: lease(settings, sid, "other").acquire(), seconds=TTL * 5, what="lease lapsed"
    )


def test_a_retry_alone_takes_over_the_lease_left_for_it(settings: Settings) -> None:
    sid = uuid.uuid4()
    first = lease(settings, sid, "task", retries=0)
    with first.held():
        first.hand_to_retry(countdown=60)
    assert not lease(settings, sid, "other").acquire()
    assert not lease(settings, sid, "task", retries=0).acquire(), "only the next attempt"
    assert lease(settings, sid, "task", retries=1).acquire()


def test_the_sweep_resends_an_unleased_snippet_once_per_marker_ttl(
    app_stack: Stack, broker: redis.Redis, settings: Settings
) -> None:
    app_stack.procs["worker"].stop()  # nothing consumes: messages stay where they are
    try:
        accepted = app_stack.upload("lost.py", FIB)
        sid, task_id = accepted["id"], accepted["task_id"]
        assert queued(broker, task_id) == 1
        mark_indexing_long_ago(app_stack, sid)
        # A live run holds it: nothing is sent.
        broker.set(redelivery.lease_key(sid), "a live run", ex=600)
        assert sweep(app_stack) == {"indexing": 1, "lost": 0, "resent": 0}
        # Its run died (the lease lapsed): sent again once, under the id the client holds.
        broker.delete(redelivery.lease_key(sid))
        assert sweep(app_stack) == {"indexing": 1, "lost": 1, "resent": 1}
        assert queued(broker, task_id) == 2
        assert sweep(app_stack) == {"indexing": 1, "lost": 1, "resent": 0}, "once per marker"
        marker = f"{SENT_PREFIX}{redelivery.RESENT_PREFIX}{sid}"
        assert 0 < int(broker.ttl(marker)) <= settings.index_lease_ttl * 4
        broker.delete(marker)  # the marker's TTL passed: the next sweep sends again
        assert sweep(app_stack)["resent"] == 1
        assert queued(broker, task_id) == 3
    finally:
        app_stack.restart_worker()
    snippet = app_stack.wait_indexed(sid)
    assert snippet["task_id"] == task_id


def test_a_run_that_finds_the_lease_held_indexes_nothing(
    app_stack: Stack, broker: redis.Redis
) -> None:
    app_stack.procs["worker"].stop()
    try:
        accepted = app_stack.upload("held.py", FIB)
        sid, task_id = accepted["id"], accepted["task_id"]
        broker.set(redelivery.lease_key(sid), "another run", ex=600)
    finally:
        app_stack.restart_worker()
    with app_stack.client() as http:

        def finished() -> bool:
            return bool(http.get(f"/api/v1/tasks/{task_id}").json()["state"] == "SUCCESS")

        wait_until(finished, seconds=90, what="the message consumed")
        result = http.get(f"/api/v1/tasks/{task_id}").json()["result"]
    assert result["status"] == "running elsewhere"
    assert app_stack.snippet(sid)["status"] == "pending", "the holder indexes it, not this run"
    assert broker.get(redelivery.lease_key(sid)) == b"another run", "the holder's lease kept"
    broker.delete(redelivery.lease_key(sid))


def test_the_worker_survives_a_redis_restart_with_a_task_in_flight(
    app_stack: Stack, broker: redis.Redis
) -> None:
    """The consumer reconnects and the task in flight finishes (in the compose drill, where the
    broker's name stops resolving, Celery 5.7 died here: worker/celery_app.py)."""
    app_stack.procs["worker"].stop()
    slow = {**app_stack.env, "INDEX_TEST_DELAY": "8"}  # the task holds its message meanwhile
    app_stack.procs["worker"] = processes.worker(slow, app_stack.logdir)
    try:
        sid = app_stack.upload("restart.py", FIB)["id"]
        wait_until(
            lambda: app_stack.snippet(sid)["status"] == "indexing",
            seconds=60,
            what="the index task in flight",
        )
        app_stack.containers["redis"].get_wrapped_container().restart(timeout=5)
        wait_until(lambda: answers(broker), seconds=60, what="redis back")
        app_stack.wait_indexed(sid)
        assert app_stack.procs["worker"].alive(), "the worker died with the broker connection"
        # And it still consumes: a new upload after the restart is indexed.
        app_stack.wait_indexed(app_stack.upload("after.py", FIB)["id"])
    finally:
        app_stack.restart_worker()
