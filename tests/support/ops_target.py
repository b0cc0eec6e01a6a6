"""The operations tooling's view of a test stack (tests/support/stack.py): its postgres
container, the app's environment, and its backend and worker host processes as the writers.
Plus readers that tests compare before and after: every row, every object's sha256."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, LiteralString

import psycopg

from coach.objects import ObjectStore
from ops.data.manifest import TABLES
from ops.data.target import ContainerTarget, Writers, settings_from_env
from tests.support import processes
from tests.support.stack import Stack

WRITER_PROCS = ("backend", "worker")  # stopped in this order: no new work, then the worker


def stack_target(stack: Stack, calls: list[str] | None = None) -> ContainerTarget:
    """`calls` records every stop and start, for tests that must prove none happened."""
    port = int(stack.base_url.rsplit(":", 1)[1])

    def stop() -> list[str]:
        if calls is not None:
            calls.append("stop")
        stopped = [name for name in WRITER_PROCS if stack.procs[name].alive()]
        for name in stopped:
            stack.procs[name].stop()
        return stopped

    def start(stopped: list[str]) -> None:
        if calls is not None:
            calls.append("start")
        if "worker" in stopped:
            stack.procs["worker"] = processes.worker(stack.env, stack.logdir)
        if "backend" in stopped:
            stack.procs["backend"] = processes.backend(stack.env, port, stack.logdir)

    return ContainerTarget(postgres_container_id(stack), stack.env, Writers(stop, start))


def postgres_container_id(stack: Stack) -> str:
    return str(stack.containers["postgres"].get_wrapped_container().id)


def dsn(stack: Stack) -> str:
    env = stack.env
    return (
        f"host=127.0.0.1 port={env['POSTGRES_PORT']} user=coach dbname=coach "
        f"password={env['POSTGRES_PASSWORD']}"
    )


def table_rows(stack: Stack) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every row of the app's tables, in primary-key order."""
    with psycopg.connect(dsn(stack)) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()  # noqa: S608
            for table in TABLES
        }


def sql(stack: Stack, statement: LiteralString, *params: Any) -> None:
    with psycopg.connect(dsn(stack)) as conn:
        conn.execute(statement, params)


def object_digests(stack: Stack) -> dict[str, str]:
    store = ObjectStore(settings_from_env(stack.env))

    async def read() -> dict[str, str]:
        return {
            key: hashlib.sha256(await store.get_async(key)).hexdigest()
            for key in await store.keys()
        }

    return asyncio.run(read())


def put_object(stack: Stack, key: str, data: bytes) -> None:
    asyncio.run(ObjectStore(settings_from_env(stack.env)).put(key, data))


def delete_object(stack: Stack, key: str) -> None:
    asyncio.run(ObjectStore(settings_from_env(stack.env)).delete(key))
