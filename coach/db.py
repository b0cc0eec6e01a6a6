"""Database engine and sessions; the same code serves PostgreSQL and embedded SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy.ext.asyncio
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from coach.settings import Settings


def make_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    """`pooled=False` for processes that open a fresh event loop per unit of work (Celery
    tasks): a pooled asyncpg connection must not outlive the loop that made it."""
    kwargs: dict[str, Any] = {}
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
        kwargs["poolclass"] = NullPool
    else:
        kwargs["connect_args"] = {
            "timeout": settings.db_connect_timeout,
            "command_timeout": 30,
            "server_settings": {"application_name": settings.service_name},
        }
        if pooled:
            kwargs.update(pool_size=settings.db_pool_size, pool_pre_ping=True, pool_recycle=1800)
        else:
            kwargs["poolclass"] = NullPool
    # Looked up on the module at call time: OpenTelemetry's SQLAlchemy instrumentation wraps that
    # attribute to trace every engine made after it (coach.tracing.instrument_libraries).
    # hide_parameters: a failed statement's text names no bound values (snippet titles,
    # questions, key hashes) in error logs and spans.
    engine = sqlalchemy.ext.asyncio.create_async_engine(
        settings.database_url, hide_parameters=True, **kwargs
    )
    if settings.embedded:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers and the eager worker thread coexist
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def session_scope(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Commit on success, roll back on any exception."""
    async with maker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()
