"""Schema migrations as one explicit step (`python -m coach migrate`, the compose `migrate`
service), serialised across processes by a PostgreSQL advisory lock.

A second migrator waits for the lock and then finds nothing left to do; if the lock cannot be
had within the timeout it fails loudly — it never skips, since skipping would let an app start
on a schema it does not understand.

Given the app's database password (POSTGRES_APP_PASSWORD), it also keeps the least-privilege
roles (coach/dbroles.py) and runs the migrations as the schema's owner, not as the superuser.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from coach import dbroles
from coach.db import make_engine
from coach.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_KEY = 0x636F616368  # "coach": one app-wide key, any fixed bigint would do


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _step(connection: Connection, direction: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    (command.upgrade if direction == "up" else command.downgrade)(config, revision)


async def current_revision(settings: Settings) -> str | None:
    engine = make_engine(settings, pooled=False)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()


async def migrate(
    settings: Settings, *, lock_timeout_s: int = 120, to: str = "head"
) -> tuple[str | None, str]:
    """Upgrade to head (or `to`); returns (revision before, revision after)."""
    before, after = await _locked_step(settings, "up", to, lock_timeout_s)
    assert after is not None
    return before, after


async def downgrade(
    settings: Settings, revision: str, *, lock_timeout_s: int = 120
) -> tuple[str | None, str | None]:
    """Down to `revision` ("base": nothing left), for rollbacks and the migration tests."""
    return await _locked_step(settings, "down", revision, lock_timeout_s)


async def _locked_step(
    settings: Settings, direction: str, revision: str, lock_timeout_s: int
) -> tuple[str | None, str | None]:
    engine = make_engine(settings, pooled=False)
    try:
        async with engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                # Bounded wait for the lock, then loud failure; DDL gets the same bound.
                await conn.execute(text(f"SET statement_timeout = '{int(lock_timeout_s)}s'"))
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
                await conn.execute(text("RESET statement_timeout"))
                await conn.execute(text(f"SET lock_timeout = '{int(lock_timeout_s)}s'"))
                await conn.commit()
            roles = postgres and dbroles.managed(settings)
            try:
                if roles:
                    await conn.run_sync(dbroles.ensure_roles, settings)
                    await conn.run_sync(dbroles.set_owner_role, settings)
                    await conn.commit()
                before = await conn.run_sync(_current)
                await conn.run_sync(_step, direction, revision)
                await conn.commit()
                after = await conn.run_sync(_current)
                if roles:
                    await conn.run_sync(dbroles.reset_role)
                    await conn.run_sync(dbroles.grant_app, settings)
                    await conn.commit()
            finally:
                if postgres:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                    await conn.commit()
        return before, after
    finally:
        await engine.dispose()


async def wait_for_database(settings: Settings, *, schema: bool, timeout_s: float) -> None:
    """Until PostgreSQL answers (and, with `schema`, the schema is at this code's head).

    Nothing orders the services under Swarm: the migrate job may start before PostgreSQL, the
    backend before the migrate job. Waiting here is quieter than crash loops; past the timeout
    the caller fails loudly and the orchestrator's restart policy takes over.
    """
    log = structlog.get_logger("coach.migrate")
    deadline = time.monotonic() + timeout_s
    head = head_revision() if schema else None
    reported = ""
    while True:
        try:
            revision = await current_revision(settings)
            if head is None or revision == head:
                return
            why = f"schema at {revision or 'empty'}, code needs {head}"
        except (OSError, SQLAlchemyError, TimeoutError) as exc:
            why = f"database not answering ({type(exc).__name__})"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout_s:.0f}s: {why}")
        if why != reported:
            log.info(f"waiting: {why}", timeout_s=timeout_s)
            reported = why
        await asyncio.sleep(2)
