"""Under Swarm nothing orders the services: migrate waits for the database, the backend for
the schema, each bounded, and gives up naming what it waited for."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from coach.migrate import migrate, wait_for_database
from coach.settings import Settings
from tests.support.processes import free_port


def test_gives_up_on_a_database_that_does_not_answer() -> None:
    settings = Settings(postgres_host="127.0.0.1", postgres_port=free_port())
    with pytest.raises(TimeoutError, match=r"gave up after 1s: database not answering"):
        asyncio.run(wait_for_database(settings, schema=False, timeout_s=1))


def test_waits_for_the_schema_until_migrated(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    with pytest.raises(TimeoutError, match=r"schema at empty, code needs \w+"):
        asyncio.run(wait_for_database(settings, schema=True, timeout_s=0))

    async def migrate_later_while_waiting() -> None:
        waiting = asyncio.create_task(wait_for_database(settings, schema=True, timeout_s=30))
        await asyncio.sleep(0.5)
        assert not waiting.done(), "returned before the schema existed"
        await migrate(settings)
        await asyncio.wait_for(waiting, 10)

    asyncio.run(migrate_later_while_waiting())
