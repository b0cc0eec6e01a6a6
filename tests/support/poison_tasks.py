"""TEST DOUBLE: tasks for the poison-message test, served by a worker of their own on QUEUE
(`celery -A tests.support.poison_tasks worker --queues=...`), on the application's Celery app
and its delivery cap.

`poison` records each delivery in a file, then SIGKILLs the pool process running it, as a crash
in a C extension or the OOM killer would, on every delivery. `echo` is an ordinary task."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from worker.celery_app import app
from worker.deliveries import DeliveryCapped

QUEUE = "coach-poison-test"


@app.task(name="tests.poison", base=DeliveryCapped)  # type: ignore[untyped-decorator]
def poison(deliveries_file: str) -> None:
    with Path(deliveries_file).open("a") as out:
        out.write(f"{os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="tests.echo")  # type: ignore[untyped-decorator]
def echo(value: str) -> str:
    return value
