"""The resumable, atomic reindex: vectors rebuilt from the chunks table into a new collection,
the search alias swapped to it in one step; shared by the worker's task and the operations
tooling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, text

from coach.errors import CoachError
from coach.models import Chunk, Snippet, utcnow
from coach.runtime import Runtime
from coach.vectors import payload

Point = tuple[uuid.UUID, list[float], dict[str, Any]]

log = structlog.get_logger(__name__)


# A reindex in progress carries this point in its new collection: the last chunk id written and
# what it was built with. It lives beside the points it describes (one upsert writes both), so a
# restarted reindex continues exactly where the data says it stopped; it is removed before the
# alias swap, so no search ever sees it.
MARKER_ID = uuid.UUID("3b0e51d6-6f0e-4d8a-9c39-5f3f1f0a7e01")
REINDEX_LOCK_KEY = 0x636F61636801  # PostgreSQL advisory lock: one reindex at a time
CATCH_UP_MARGIN = timedelta(minutes=1)  # clock skew between app hosts and this one


class ReindexBusy(CoachError):
    """Another reindex holds the lock; running two would race on the alias."""

    status_code = 409


@dataclass(frozen=True)
class ReindexProgress:
    collection: str
    done: int  # points in the new collection, those of a resumed run included
    total: int  # chunks when this run started
    written: int  # points written by this run
    seconds: float

    @property
    def points_per_second(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class ReindexResult:
    collection: str
    previous: str | None
    points: int  # written by this run
    seconds: float
    resumed_from: int = 0  # points already written by an interrupted run that this one resumed
    caught_up: int = 0  # points rewritten after the swap: snippets indexed while the run went on
    dropped: tuple[str, ...] = ()  # collections removed: the previous one and abandoned runs

    @property
    def resumed(self) -> bool:
        return self.resumed_from > 0

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds if self.seconds else 0.0


ChunkRow = tuple[Chunk, str, str, str]  # chunk, snippet title, language, tenant


async def reindex(
    rt: Runtime,
    *,
    batch: int = 256,
    resume: bool = True,
    on_batch: Callable[[ReindexProgress], None] | None = None,
) -> ReindexResult:
    """Rebuild the vector collection from the chunks table into a new collection, then swap
    the alias in one atomic operation: searches never see an empty or partial index.

    An interrupted run (crash, kill, deploy) is continued by the next one into the same new
    collection (`resume=False` drops it and starts over). `on_batch` sees progress after every
    batch; an exception it raises aborts the run like a crash would.
    """
    async with _exclusive(rt):
        return await _reindex(rt, batch=batch, resume=resume, on_batch=on_batch)


@asynccontextmanager
async def _exclusive(rt: Runtime) -> AsyncIterator[None]:
    """On PostgreSQL, an advisory lock held by one connection for the whole run (autocommit:
    no transaction stays open). Embedded SQLite is one process: nothing to lock against."""
    if rt.engine.dialect.name != "postgresql":
        yield
        return
    async with rt.engine.connect() as connection:
        conn = await connection.execution_options(isolation_level="AUTOCOMMIT")
        locked = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": REINDEX_LOCK_KEY})
        if not locked:
            raise ReindexBusy("another reindex is running (advisory lock held)")
        try:
            yield
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": REINDEX_LOCK_KEY})


async def _reindex(
    rt: Runtime,
    *,
    batch: int,
    resume: bool,
    on_batch: Callable[[ReindexProgress], None] | None,
) -> ReindexResult:
    started = time.perf_counter()
    vectors = rt.vectors
    current = await asyncio.to_thread(vectors.target)
    found, dropped = await asyncio.to_thread(_in_progress, rt, current, resume)
    total = await chunk_count(rt)
    if found is not None:
        name, state = found
        last_id = uuid.UUID(state["last_chunk_id"]) if state.get("last_chunk_id") else None
        since = datetime.fromisoformat(state["started_at"])
        resumed_from = max(await asyncio.to_thread(vectors.count, name) - 1, 0)  # minus marker
        log.info(
            "reindex resuming", collection=name, points=resumed_from, last_chunk_id=str(last_id)
        )
    else:
        name, last_id, since, resumed_from = vectors.new_collection_name(), None, utcnow(), 0
        await asyncio.to_thread(vectors.create_collection, name)
        state = {"started_at": since.isoformat(), "embedder": rt.embedder.name, "dim": vectors.dim}
        await asyncio.to_thread(vectors.upsert, [_marker(rt, state, None)], name)
    written = 0
    while True:
        rows = await _chunks_after(rt, last_id, batch)
        if not rows:
            break
        last_id = rows[-1][0].id
        points = await _points(rt, rows)
        points.append(_marker(rt, state, last_id))  # one request: points and progress together
        await asyncio.to_thread(vectors.upsert, points, name)
        written += len(rows)
        if on_batch is not None:
            on_batch(
                ReindexProgress(
                    name, resumed_from + written, total, written, time.perf_counter() - started
                )
            )
    await asyncio.to_thread(vectors.delete_points, name, [MARKER_ID])
    previous = await asyncio.to_thread(vectors.switch_alias, name)
    if previous is not None and previous != name:
        await asyncio.to_thread(vectors.drop, previous)
        dropped.append(previous)
    caught_up = await _catch_up(rt, name, since - CATCH_UP_MARGIN, batch)
    result = ReindexResult(
        name,
        previous,
        written,
        time.perf_counter() - started,
        resumed_from=resumed_from,
        caught_up=caught_up,
        dropped=tuple(dropped),
    )
    log.info(
        "reindex complete",
        collection=name,
        previous=previous,
        points=written,
        resumed_from=resumed_from,
        caught_up=caught_up,
        points_per_second=round(result.points_per_second, 1),
    )
    return result


def _marker(rt: Runtime, state: dict[str, Any], last_id: uuid.UUID | None) -> Point:
    unit = [1.0] + [0.0] * (rt.vectors.dim - 1)  # cosine distance rejects the zero vector
    return (MARKER_ID, unit, {"reindex": {**state, "last_chunk_id": last_id and str(last_id)}})


def _in_progress(
    rt: Runtime, current: str | None, resume: bool
) -> tuple[tuple[str, dict[str, Any]] | None, list[str]]:
    """The interrupted run to continue, if any, and the other leftovers, dropped: runs with a
    different embedder or vector size, older interrupted runs, and collections of a run that
    died between removing its marker and the swap. Nothing is dropped while no alias exists:
    `VectorStore.ensure` may be creating the first collection at that very moment."""
    vectors = rt.vectors
    prefix = f"{vectors.alias}_"
    leftovers = sorted(
        (c for c in vectors.collections() if c.startswith(prefix) and c != current), reverse=True
    )
    found: tuple[str, dict[str, Any]] | None = None
    dropped: list[str] = []
    for name in leftovers:  # newest first: names start with a timestamp
        state = (vectors.point_payload(name, MARKER_ID) or {}).get("reindex")
        usable = (
            resume
            and found is None
            and isinstance(state, dict)
            and state.get("embedder") == rt.embedder.name
            and state.get("dim") == vectors.dim == vectors.vector_size(name)
        )
        if usable:
            assert isinstance(state, dict)
            found = (name, state)
        elif current is not None or not resume:
            vectors.drop(name)
            dropped.append(name)
    return found, dropped


async def _chunks_after(
    rt: Runtime, last_id: uuid.UUID | None, batch: int, *, changed_since: datetime | None = None
) -> list[ChunkRow]:
    """The next batch of chunks in id order (of snippets changed since then, if given)."""
    async with rt.sessions() as session:
        query = (
            select(Chunk, Snippet.title, Snippet.language, Snippet.tenant)
            .join(Snippet, Snippet.id == Chunk.snippet_id)
            .order_by(Chunk.id)
            .limit(batch)
        )
        if last_id is not None:
            query = query.where(Chunk.id > last_id)
        if changed_since is not None:
            query = query.where(Snippet.updated_at >= changed_since)
        result = await session.execute(query)
        return [(c, title, language, tenant) for c, title, language, tenant in result]


async def _points(rt: Runtime, rows: list[ChunkRow]) -> list[Point]:
    vectors = await asyncio.to_thread(rt.embedder.embed, [r[0].text for r in rows])
    return [
        (c.id, vec, payload(c.snippet_id, c, title=title, language=language, tenant=tenant))
        for (c, title, language, tenant), vec in zip(rows, vectors, strict=True)
    ]


async def _catch_up(rt: Runtime, collection: str, since: datetime, batch: int) -> int:
    """Snippets indexed while the run went on wrote into the old collection, maybe after this
    run had read past their chunks: write them again into the new one, now behind the alias
    (idempotent: point ids derive from content), and drop their points of chunks that are no
    more. Batched like the main loop, with one delete at the end."""
    last_id: uuid.UUID | None = None
    snippet_ids: set[uuid.UUID] = set()
    current: list[uuid.UUID] = []
    while rows := await _chunks_after(rt, last_id, batch, changed_since=since):
        await asyncio.to_thread(rt.vectors.upsert, await _points(rt, rows), collection)
        last_id = rows[-1][0].id
        snippet_ids.update(row[0].snippet_id for row in rows)
        current += [row[0].id for row in rows]
    if snippet_ids:
        await asyncio.to_thread(rt.vectors.delete_stale, collection, snippet_ids, set(current))
    return len(current)


async def chunk_count(rt: Runtime) -> int:
    async with rt.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Chunk)) or 0)
