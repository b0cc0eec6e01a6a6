"""What the index task leaves for the redelivery sweep when it can neither index nor send its
own retry (worker/tasks.py, worker/redelivery.py). The lease and the sweep themselves run
against a real Redis in tests/integration/test_redelivery.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import Reject
from fastapi.testclient import TestClient

from tests.unit.test_api_embedded import upload
from worker import redelivery, tasks


def test_a_retry_that_cannot_be_sent_leaves_the_snippet_to_the_sweep(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = upload(client)["id"]

    def database_down(*_: Any) -> int:
        raise ConnectionRefusedError(111, "Connection refused")

    def broker_down(**_: Any) -> None:
        raise Reject(ConnectionRefusedError(111, "Connection refused"), requeue=False)

    monkeypatch.setattr(tasks, "_index", database_down)
    monkeypatch.setattr(tasks.index_snippet, "retry", broker_down)
    outcome = tasks.index_snippet.apply(args=[sid])
    assert isinstance(outcome.result, Reject)
    # Indexing without a lease: the state redeliver_lost re-sends, not a pending one that
    # would wait an hour for requeue_pending.
    assert client.get(f"/api/v1/snippets/{sid}").json()["status"] == "indexing"


def test_a_channel_of_a_collected_broker_connection_fails_as_a_connection_error() -> None:
    """Celery 5.7 goes on using the channels of a lost Redis connection after collecting it;
    a connection error there is one Celery recovers from (worker/celery_app.py)."""
    from kombu.transport import redis as kombu_redis  # noqa: PLC0415
    from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415

    import worker.celery_app  # noqa: F401, PLC0415 - installs the guard

    collected = SimpleNamespace(connection=SimpleNamespace(client=None))
    with pytest.raises(RedisConnectionError):
        kombu_redis.Channel._connparams(collected)  # type: ignore[no-untyped-call, arg-type]


def test_a_holder_that_died_on_this_host_is_recognised_and_others_are_not() -> None:
    """A killed pool process's lease is taken over at once by its redelivered message; a
    holder elsewhere, alive, or a retry's placeholder is left to its TTL."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = socket.gethostname()
    assert redelivery.died_here(f"{here}:{gone.pid}:task:abcd1234")
    assert not redelivery.died_here(f"{here}:{os.getpid()}:task:abcd1234")
    assert not redelivery.died_here(f"elsewhere-{here}:{gone.pid}:task:abcd1234")
    assert not redelivery.died_here("retry:task:1")
