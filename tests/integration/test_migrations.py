"""Migrations: one explicit step, serialised by an advisory lock, never silently skipped."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError

from coach.db import make_engine
from coach.migrate import LOCK_KEY, current_revision, downgrade, head_revision, migrate
from coach.models import Base
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
        assert asyncio.run(migrate(settings, to="0001")) == (None, "0001")
        with psycopg.connect(dsn, autocommit=True) as db:
            _rows_before_tenants(db)
            assert asyncio.run(migrate(settings)) == ("0001", head_revision())
            _tenants_default(db)
            assert asyncio.run(_differences(settings)) == [], "models and migrations agree"
            assert asyncio.run(downgrade(settings, "0001")) == (head_revision(), "0001")
            columns = "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            assert "tenant" not in {r[0] for r in db.execute(columns, ("snippets",))}
            assert "api_key_id" not in {r[0] for r in db.execute(columns, ("questions",))}
            assert db.execute("SELECT to_regclass('api_keys')").fetchone() == (None,)
            assert db.execute("SELECT count(*) FROM chunks").fetchone() == (1,)
        assert asyncio.run(migrate(settings)) == ("0001", head_revision())
        assert asyncio.run(migrate(settings)) == (head_revision(), head_revision())
        assert asyncio.run(current_revision(settings)) == head_revision()

        with psycopg.connect(dsn, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            # Another migrator holds the lock: wait (bounded), then fail — never skip.
            with pytest.raises(DBAPIError, match="statement timeout"):
                asyncio.run(migrate(settings, lock_timeout_s=1))
            holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        assert asyncio.run(migrate(settings))[1] == head_revision()


SNIPPET = uuid.UUID("7d0c2b8e-2f65-4b8e-9d0a-1f4c7f9a0001")


def _rows_before_tenants(db: psycopg.Connection[Any]) -> None:
    db.execute(
        "INSERT INTO snippets VALUES (%s, 't', 'python', 'k', 'h', 1, 'indexed', NULL, 1, NULL,"
        " now(), now())",
        (SNIPPET,),
    )
    db.execute("INSERT INTO chunks VALUES (%s, %s, 0, 'x', 1, 1, 'h')", (uuid.uuid4(), SNIPPET))
    db.execute(
        "INSERT INTO questions VALUES (%s, 'q', 'a', 'm', %s, '[]', 1, 1, 1, NULL, now())",
        (uuid.uuid4(), SNIPPET),
    )


def _tenants_default(db: psycopg.Connection[Any]) -> None:
    """Rows from before migration 0002 belong to tenant 'default', nothing else changed."""
    assert db.execute("SELECT id, tenant FROM snippets").fetchall() == [(SNIPPET, "default")]
    assert db.execute("SELECT snippet_id, tenant, api_key_id FROM questions").fetchall() == [
        (SNIPPET, "default", None)
    ]
    assert db.execute("SELECT count(*) FROM chunks").fetchone() == (1,)


async def _differences(settings: Settings) -> list[Any]:
    engine = make_engine(settings, pooled=False)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
