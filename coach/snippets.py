"""Snippets: accept code, store it, index it into vectors, list and read it back."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, func, select

from coach.chunking import chunk_text
from coach.db import session_scope
from coach.errors import InvalidInput, NotFound, PayloadTooLarge
from coach.models import Chunk, Snippet, SnippetStatus
from coach.runtime import Runtime
from coach.settings import LANGUAGES
from coach.text import SOURCE_WHITESPACE, refuse_controls
from coach.vectors import payload

log = structlog.get_logger(__name__)

OBJECT_PREFIX = "snippets/"  # every snippet's object key; nothing else lives under it


def validate_content(raw: bytes, *, language: str, max_bytes: int) -> str:
    """UTF-8 text within the size limit, in an allowed language, or a clear 4xx."""
    if language not in LANGUAGES:
        raise InvalidInput(f"unknown language {language!r}; allowed: {', '.join(LANGUAGES)}")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"snippet is {len(raw)} bytes; the limit is {max_bytes}")
    if b"\x00" in raw:
        raise InvalidInput("snippet looks binary (NUL bytes); only UTF-8 text is accepted")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"snippet is not valid UTF-8 (byte {exc.start})") from exc
    if not text.strip():
        raise InvalidInput("snippet is empty")
    try:
        refuse_controls(text, allowed=SOURCE_WHITESPACE)
    except ValueError as exc:
        raise InvalidInput(f"snippet: {exc}") from exc
    return text


async def create(rt: Runtime, *, tenant: str, title: str, language: str, raw: bytes) -> Snippet:
    """Store the object, then the row (status pending). The caller enqueues indexing."""
    validate_content(raw, language=language, max_bytes=rt.settings.max_snippet_bytes)
    snippet_id = uuid.uuid4()
    key = f"{OBJECT_PREFIX}{snippet_id}"
    digest = hashlib.sha256(raw).hexdigest()
    await rt.objects.put(key, raw)
    try:
        async with session_scope(rt.sessions) as session:
            snippet = Snippet(
                id=snippet_id,
                tenant=tenant,
                title=title,
                language=language,
                object_key=key,
                sha256=digest,
                size_bytes=len(raw),
                status=SnippetStatus.pending,
            )
            session.add(snippet)
    except BaseException:
        await rt.objects.delete(key)  # no orphan object when the row could not be written
        raise
    return snippet


async def discard(rt: Runtime, snippet: Snippet) -> None:
    """Undo `create` when indexing could not be enqueued: the upload changes nothing."""
    async with session_scope(rt.sessions) as session:
        await session.execute(delete(Snippet).where(Snippet.id == snippet.id))
    await rt.objects.delete(snippet.object_key)


async def set_task(rt: Runtime, *, sid: uuid.UUID, task_id: str) -> None:
    async with session_scope(rt.sessions) as session:
        snippet = await session.get(Snippet, sid)
        if snippet is not None:
            snippet.task_id = task_id


async def get(rt: Runtime, snippet_id: uuid.UUID, *, tenant: str) -> Snippet:
    """Another tenant's snippet is as unknown as one that never was: a 404, never a 403 that
    would tell it exists."""
    async with rt.sessions() as session:
        snippet = await session.scalar(
            select(Snippet).where(Snippet.id == snippet_id, Snippet.tenant == tenant)
        )
    if snippet is None:
        raise NotFound(f"no snippet {snippet_id}")
    return snippet


async def page(
    rt: Runtime, *, tenant: str, limit: int, offset: int
) -> tuple[Sequence[Snippet], int]:
    async with rt.sessions() as session:
        total = await session.scalar(
            select(func.count()).select_from(Snippet).where(Snippet.tenant == tenant)
        )
        rows = await session.scalars(
            select(Snippet)
            .where(Snippet.tenant == tenant)
            .order_by(Snippet.created_at.desc(), Snippet.id)
            .limit(limit)
            .offset(offset)
        )
        return rows.all(), int(total or 0)


async def by_task(rt: Runtime, task_id: str, *, tenant: str) -> Snippet | None:
    async with rt.sessions() as session:
        return await session.scalar(
            select(Snippet).where(Snippet.task_id == task_id, Snippet.tenant == tenant)
        )


async def index(rt: Runtime, snippet_id: uuid.UUID) -> int:
    """Read the object, chunk it, embed, upsert vectors, record chunks; idempotent.

    Point ids derive from content, so a retry after a crash rewrites the same points; chunks no
    longer produced (an edited snippet) are removed from both stores. Returns the chunk count.
    """
    async with session_scope(rt.sessions) as session:
        snippet = await session.get(Snippet, snippet_id)
        if snippet is None:
            raise NotFound(f"no snippet {snippet_id}")
        snippet.status = SnippetStatus.indexing
        snippet.error = None
        key, language, title = snippet.object_key, snippet.language, snippet.title
        tenant = snippet.tenant
    raw = await rt.objects.get_async(key)
    text = raw.decode("utf-8")
    chunks = chunk_text(
        snippet_id,
        text,
        lines=rt.settings.chunk_lines,
        overlap=rt.settings.chunk_overlap,
        max_bytes=rt.settings.chunk_max_bytes,
    )
    vectors = await asyncio.to_thread(rt.embedder.embed, [c.text for c in chunks])
    points = [
        (c.id, vec, payload(snippet_id, c, title=title, language=language, tenant=tenant))
        for c, vec in zip(chunks, vectors, strict=True)
    ]
    await asyncio.to_thread(rt.vectors.ensure)
    await asyncio.to_thread(rt.vectors.upsert, points)
    await asyncio.to_thread(rt.vectors.delete_snippet, snippet_id, {c.id for c in chunks})
    async with session_scope(rt.sessions) as session:
        await session.execute(delete(Chunk).where(Chunk.snippet_id == snippet_id))
        session.add_all(
            Chunk(
                id=c.id,
                snippet_id=snippet_id,
                ordinal=c.ordinal,
                text=c.text,
                start_line=c.start_line,
                end_line=c.end_line,
                content_hash=c.content_hash,
            )
            for c in chunks
        )
        snippet = await session.get(Snippet, snippet_id)
        if snippet is None:  # deleted while we worked: leave no vectors behind
            await asyncio.to_thread(rt.vectors.delete_snippet, snippet_id)
            return 0
        snippet.status = SnippetStatus.indexed
        snippet.chunk_count = len(chunks)
    log.info("snippet indexed", snippet_id=str(snippet_id), chunks=len(chunks))
    return len(chunks)


async def mark_failed(rt: Runtime, snippet_id: uuid.UUID, error: str) -> None:
    async with session_scope(rt.sessions) as session:
        snippet = await session.get(Snippet, snippet_id)
        if snippet is not None:
            snippet.status = SnippetStatus.failed
            snippet.error = error[:2000]


async def stale_pending(rt: Runtime, *, older_than_s: float) -> list[tuple[uuid.UUID, str | None]]:
    """(id, task id) of snippets whose indexing was never picked up (e.g. the enqueue was lost
    in a crash); the task id is None when none was ever stored."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    async with rt.sessions() as session:
        rows = await session.execute(
            select(Snippet.id, Snippet.task_id).where(
                Snippet.status == SnippetStatus.pending, Snippet.updated_at < cutoff
            )
        )
        return [(sid, task_id) for sid, task_id in rows.all()]


@dataclass(frozen=True)
class OrphanSweep:
    scanned: int  # objects under the prefix
    old: int  # of those, older than the minimum age
    removed: int  # of those, with no row: deleted


async def remove_orphan_objects(rt: Runtime, *, min_age_s: float) -> OrphanSweep:
    """Delete objects under snippets/ that no snippet row (of any tenant) names and that are
    older than `min_age_s` by their last-modified time.

    An upload stores its object before its row, and a refused or crashed one may leave the
    object behind; an upload in flight has its object without a row too, so a young object is
    never touched. Rows are looked up after the listing: a row committed meanwhile keeps its
    object.
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=min_age_s)
    listed = await rt.objects.listing(OBJECT_PREFIX)
    old = [o.key for o in listed if o.last_modified < cutoff]
    named: set[str] = set()
    async with rt.sessions() as session:
        for start in range(0, len(old), 500):  # bounded IN lists (SQLite's variable limit)
            batch = old[start : start + 500]
            rows = await session.scalars(
                select(Snippet.object_key).where(Snippet.object_key.in_(batch))
            )
            named.update(rows.all())
    orphans = [key for key in old if key not in named]
    for key in orphans:
        await rt.objects.delete(key)
    return OrphanSweep(scanned=len(listed), old=len(old), removed=len(orphans))
