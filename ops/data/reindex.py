"""Rebuild the vector collection from the chunks table (coach.reindexing.reindex) with progress
and throughput for an operator. The swap is atomic and an interrupted run resumes: running it
again is always safe."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from coach import reindexing
from coach.reindexing import ReindexProgress, ReindexResult
from coach.runtime import Runtime
from coach.settings import Settings
from ops.console import Reporter


def reindex(
    settings: Settings,
    *,
    batch: int = 256,
    fresh: bool = False,
    reporter: Reporter | None = None,
    on_batch: Callable[[ReindexProgress], None] | None = None,
) -> ReindexResult:
    """`fresh` drops an interrupted run instead of continuing it. `on_batch` is called after
    each batch, after the progress line (tests use it to interrupt a run)."""
    reporter = reporter or Reporter()

    def progress(p: ReindexProgress) -> None:
        reporter.progress(
            "reindex",
            f"reindex {p.collection}: {p.done}/{p.total} points, "
            f"{p.points_per_second:.0f} points/s",
            completed=p.done,
            total=p.total,
            unit="points",
            collection=p.collection,
            done_points=p.done,
            points_per_second=round(p.points_per_second, 1),
        )
        if on_batch is not None:
            on_batch(p)

    async def main() -> ReindexResult:
        rt = Runtime.create(settings, pooled=False)
        try:
            # One local-mode client for the whole run (opening one loads every collection);
            # searches from other processes still get their turns (VectorStore.held).
            with rt.vectors.held():
                return await reindexing.reindex(
                    rt, batch=batch, resume=not fresh, on_batch=progress
                )
        finally:
            await rt.close()

    result = asyncio.run(main())
    resumed = f", resumed after {result.resumed_from} points" if result.resumed else ""
    points = result.resumed_from + result.points  # in the new collection: the whole index
    reporter.progress(
        "reindex",
        f"reindex complete: {result.points} points into {result.collection} in "
        f"{result.seconds:.1f}s ({result.points_per_second:.0f} points/s){resumed}; alias "
        f"switched from {result.previous or 'nothing'}",
        done=True,
        completed=points,
        total=points,
        unit="points",
        collection=result.collection,
        previous=result.previous,
        points=result.points,
        resumed_from=result.resumed_from,
        caught_up=result.caught_up,
        dropped=list(result.dropped),
        seconds=round(result.seconds, 3),
        points_per_second=round(result.points_per_second, 1),
    )
    return result
