"""Maintenance jobs shared by the worker's tasks and the operations tooling."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, func, select

from coach.db import session_scope
from coach.models import Chunk, Question, Snippet
from coach.runtime import Runtime
from coach.vectors import payload

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ReindexResult:
    collection: str
    previous: str | None
    points: int
    seconds: float

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds if self.seconds else 0.0


async def reindex(rt: Runtime, *, batch: int = 256) -> ReindexResult:
    """Rebuild the vector collection from the chunks table into a new collection, then swap
    the alias in one atomic operation: searches never see an empty or partial index."""
    started = time.perf_counter()
    name = rt.vectors.new_collection_name()
    await asyncio.to_thread(rt.vectors.create_collection, name)
    points = 0
    last_id: uuid.UUID | None = None
    while True:
        async with rt.sessions() as session:
            query = (
                select(Chunk, Snippet.title, Snippet.language)
                .join(Snippet, Snippet.id == Chunk.snippet_id)
                .order_by(Chunk.id)
                .limit(batch)
            )
            if last_id is not None:
                query = query.where(Chunk.id > last_id)
            rows = (await session.execute(query)).all()
        if not rows:
            break
        vectors = await asyncio.to_thread(rt.embedder.embed, [r[0].text for r in rows])
        await asyncio.to_thread(
            rt.vectors.upsert,
            [
                (c.id, vec, payload(c.snippet_id, c, title=title, language=language))
                for (c, title, language), vec in zip(rows, vectors, strict=True)
            ],
            name,
        )
        points += len(rows)
        last_id = rows[-1][0].id
    previous = await asyncio.to_thread(rt.vectors.switch_alias, name)
    if previous is not None and previous != name:
        await asyncio.to_thread(rt.vectors.drop, previous)
    result = ReindexResult(name, previous, points, time.perf_counter() - started)
    log.info(
        "reindex complete",
        collection=name,
        previous=previous,
        points=points,
        points_per_second=round(result.points_per_second, 1),
    )
    return result


async def purge_questions(rt: Runtime, *, older_than_days: int) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    async with session_scope(rt.sessions) as session:
        result = await session.execute(delete(Question).where(Question.created_at < cutoff))
    deleted = int(getattr(result, "rowcount", 0) or 0)
    log.info("questions purged", deleted=deleted, older_than_days=older_than_days)
    return deleted


async def chunk_count(rt: Runtime) -> int:
    async with rt.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Chunk)) or 0)
