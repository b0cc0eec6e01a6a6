"""Benchmark (not a test): reindex of 10,000 chunks (PostgreSQL, the offline hashing embedder,
Qdrant local mode) as `invoke reindex` runs it, one local-mode client held for the run, beside
the same reindex with a client opened per call as before, alternated, best of several rounds;
and the embedder alone on the same texts.

    ./run python -m tests.bench.reindex          # BENCH_ROUNDS=5 for more rounds

Every round rebuilds the whole index into a new collection and drops the previous one, as an
operator's reindex does. Both paths write one SQLite transaction per batch (coach.vectors).
"""

from __future__ import annotations

import asyncio
import os
import time

import psycopg

from coach import reindexing
from coach.embeddings import HashingEmbedder
from coach.runtime import Runtime
from coach.settings import Settings
from ops.console import Reporter
from ops.data.reindex import reindex
from tests.bench._report import Figure, report
from tests.bench.backup_restore import database, generate

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SNIPPETS = 1000  # of 10 chunks each
BATCH = 512
GOAL = 5000.0  # points/s (issue 15)


def held(settings: Settings) -> float:
    """Points/s of the operator's reindex."""
    result = reindex(settings, batch=BATCH, reporter=Reporter(progress_every_s=3600))
    return result.points_per_second


def per_call(settings: Settings) -> float:
    """Points/s of the same reindex with local mode opened for every call, as before."""

    async def main() -> float:
        rt = Runtime.create(settings, pooled=False)
        try:
            return (await reindexing.reindex(rt, batch=BATCH)).points_per_second
        finally:
            await rt.close()

    return asyncio.run(main())


def embedder(texts: list[str], dim: int) -> float:
    """Texts/s of the hashing embedder, batch by batch as the reindex calls it, with a cold
    word cache as a reindex process starts."""
    model = HashingEmbedder(dim)
    started = time.perf_counter()
    for at in range(0, len(texts), BATCH):
        model.embed(texts[at : at + BATCH])
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    with database() as (_container_id, dsn, settings, _env):
        generate(dsn, snippets=SNIPPETS, filler_mb=0)
        with psycopg.connect(dsn) as conn:
            texts = [row[0] for row in conn.execute("SELECT text FROM chunks ORDER BY id")]
        rates: dict[str, list[float]] = {"held": [], "per_call": [], "embedder": []}
        for n in range(ROUNDS):
            order = [held, per_call] if n % 2 == 0 else [per_call, held]
            for run in order:
                rates[run.__name__].append(run(settings))
            rates["embedder"].append(embedder(texts, settings.embedding_dim))
            print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()))
    best = {k: max(v) for k, v in rates.items()}
    print(f"{len(texts)} chunks, best of {ROUNDS} rounds; held client / per call: "
          f"{best['held'] / best['per_call']:.1f}x")  # fmt: skip
    held_name = "reindex 10k chunks, local mode, one client held"
    before_name = "reindex 10k chunks, local mode, client per call (before)"
    report(
        "reindex",
        [
            Figure(held_name, best["held"], "points/s", GOAL),
            Figure(before_name, best["per_call"], "points/s", GOAL),
            # The embedder alone must outrun the whole reindex's goal.
            Figure("hashing embedder alone", best["embedder"], "texts/s", GOAL),
        ],
    )


if __name__ == "__main__":
    main()
