"""The resumable reindex in embedded mode (SQLite, Qdrant local mode): a run killed after its
first batch is continued by the next one into the same collection, and only then swapped in."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

from coach import reindexing, snippets
from coach.migrate import migrate
from coach.reindexing import MARKER_ID, ReindexProgress
from coach.runtime import Runtime
from coach.settings import get_settings

TENANT = "t1"


class Crash(RuntimeError):
    pass


def _source(tag: str, lines: int) -> bytes:
    return "\n".join(f"def {tag}_{i}(x):  return x + {i}" for i in range(lines)).encode()


async def _runtime_with_chunks() -> tuple[Runtime, int]:
    settings = get_settings()
    await migrate(settings)
    rt = Runtime.create(settings, pooled=False)
    for n in range(3):
        snippet = await snippets.create(
            rt, tenant=TENANT, title=f"s{n}", language="python", raw=_source("f", 120)
        )
        await snippets.index(rt, snippet.id)
    return rt, await reindexing.chunk_count(rt)


def test_a_crashed_reindex_resumes_into_the_same_collection(embedded_env: Path) -> None:
    async def scenario() -> None:
        rt, chunks = await _runtime_with_chunks()
        try:
            before = rt.vectors.target()
            seen: list[ReindexProgress] = []

            def crash_after_first(progress: ReindexProgress) -> None:
                seen.append(progress)
                raise Crash

            with pytest.raises(Crash):
                await reindexing.reindex(rt, batch=4, on_batch=crash_after_first)
            crashed = seen[0].collection
            assert seen[0].written == 4 and seen[0].total == chunks
            assert rt.vectors.target() == before, "a crashed run must not touch the alias"
            assert rt.vectors.point_payload(crashed, MARKER_ID) is not None

            progress: list[ReindexProgress] = []
            result = await reindexing.reindex(rt, batch=4, on_batch=progress.append)
            assert result.collection == crashed and result.resumed_from == 4
            assert result.points == chunks - 4, "only the rest is written again"
            assert progress[-1].done == chunks == progress[-1].total
            assert rt.vectors.target() == crashed
            assert rt.vectors.count() == chunks, "the marker is gone before the swap"
            assert before in result.dropped and before not in rt.vectors.collections()

            fresh = await reindexing.reindex(rt, resume=False)
            assert fresh.collection != crashed and not fresh.resumed
            assert rt.vectors.collections() == [fresh.collection]
            assert rt.vectors.count() == chunks
        finally:
            await rt.close()

    asyncio.run(scenario())


def test_an_abandoned_run_is_dropped_when_a_fresh_one_is_asked(embedded_env: Path) -> None:
    async def scenario() -> None:
        rt, chunks = await _runtime_with_chunks()
        try:

            def crash(_: ReindexProgress) -> None:
                raise Crash

            with pytest.raises(Crash):
                await reindexing.reindex(rt, batch=2, on_batch=crash)
            abandoned = [c for c in rt.vectors.collections() if c != rt.vectors.target()]
            assert len(abandoned) == 1
            result = await reindexing.reindex(rt, resume=False, batch=1000)
            assert abandoned[0] in result.dropped and not result.resumed
            assert set(rt.vectors.collections()) == {result.collection}
            assert rt.vectors.count() == chunks
            query = rt.embedder.embed(["f_3"])[0]
            hits = rt.vectors.search(query, top_k=1, tenant=TENANT)
            assert hits and hits[0].snippet_id != uuid.UUID(int=0)
            assert hits[0].payload["tenant"] == TENANT, "rebuilt points keep their tenant"
            assert rt.vectors.search(query, top_k=1, tenant="someone-else") == []
        finally:
            await rt.close()

    asyncio.run(scenario())


def test_a_snippet_indexed_during_the_run_is_caught_up_after_the_swap(embedded_env: Path) -> None:
    """Indexed into the old collection once the run has read past where its chunks sort: only
    the catch-up after the swap puts it into the new collection."""

    def index_another() -> None:
        async def work() -> None:
            other = Runtime.create(get_settings(), pooled=False)
            try:
                late = await snippets.create(
                    other, tenant=TENANT, title="late", language="python", raw=_source("late", 200)
                )
                await snippets.index(other, late.id)
            finally:
                await other.close()

        worker = threading.Thread(target=lambda: asyncio.run(work()))
        worker.start()
        worker.join()

    async def scenario() -> None:
        rt, chunks = await _runtime_with_chunks()
        try:

            def at_the_end(progress: ReindexProgress) -> None:
                if progress.written == progress.total:
                    index_another()

            result = await reindexing.reindex(rt, batch=4, on_batch=at_the_end)
            total = await reindexing.chunk_count(rt)
            assert total > chunks and result.caught_up >= total - chunks
            assert rt.vectors.count() == total, "every chunk, the late ones too"
        finally:
            await rt.close()

    asyncio.run(scenario())
