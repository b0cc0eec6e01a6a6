"""Migrations: one explicit step, serialised by an advisory lock, never silently skipped."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError

from coach.migrate import LOCK_KEY, current_revision, head_revision, migrate
from coach.settings import Settings
from tests.support.containers import container, running, wait_for_postgres


def test_migrate_is_locked_idempotent_and_fails_loudly(tmp_path: Path) -> None:
    password = secrets.token_urlsafe(12)
    pg = (
        container("POSTGRES_IMAGE")
        .with_env("POSTGRES_USER", "coach")
        .with_env("POSTGRES_PASSWORD", password)
        .with_exposed_ports(5432)
    )
    with running(pg):
        port = int(pg.get_exposed_port(5432))
        dsn = f"host=127.0.0.1 port={port} user=coach dbname=coach password={password}"

        wait_for_postgres(dsn)
        settings = Settings(
            postgres_host="127.0.0.1",
            postgres_port=port,
            postgres_password=SecretStr(password),
            data_dir=tmp_path,
        )
        assert asyncio.run(migrate(settings)) == (None, head_revision())
        assert asyncio.run(migrate(settings)) == (head_revision(), head_revision())
        assert asyncio.run(current_revision(settings)) == head_revision()

        with psycopg.connect(dsn, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            # Another migrator holds the lock: wait (bounded), then fail — never skip.
            with pytest.raises(DBAPIError, match="statement timeout"):
                asyncio.run(migrate(settings, lock_timeout_s=1))
            holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        assert asyncio.run(migrate(settings))[1] == head_revision()
