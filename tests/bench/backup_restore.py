"""Benchmark (not a test): our backup and restore on a generated database of at least 200 MB,
beside raw `pg_dump -Fc` and `pg_restore` on the same data in the same run, and reindex
throughput on a generated chunks table.

    ./run python -m tests.bench.backup_restore          # BENCH_DB_MB=400 for a bigger database

The bulk is a dedicated table of pseudo-random hex text (it compresses about 2:1, like code),
beside snippets and chunks rows of the app's own schema. MB/s is the database size
(pg_database_size) over the wall time, the same numerator for every row. Our restore includes
what the raw one does not: checksum verification first, the object store, rebuilding the
vectors of the chunks and the verification read-back; the raw restore is pg_restore + ANALYZE.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from pydantic import SecretStr

from coach.migrate import migrate
from coach.settings import Settings
from ops.console import Reporter, table
from ops.data.backup import backup
from ops.data.reindex import reindex
from ops.data.restore import restore
from ops.data.target import ContainerTarget, Writers
from tests.support.containers import container, running, wait_for_postgres
from tests.support.processes import free_port

DB_MB = int(os.environ.get("BENCH_DB_MB", "220"))
SNIPPETS = 200
CHUNKS_PER_SNIPPET = 10  # 2,000 chunks in the backed-up database
REINDEX_SNIPPETS = 1000  # 10,000 chunks for the reindex figure
ROW_BYTES = 512  # hex characters per filler row


@contextmanager
def database() -> Iterator[tuple[str, str, Settings, dict[str, str]]]:
    """A postgres container, migrated: (container id, dsn, settings, environment)."""
    password, port = secrets.token_urlsafe(12), free_port()
    pg = (
        container("POSTGRES_IMAGE")
        .with_env("POSTGRES_USER", "coach")
        .with_env("POSTGRES_DB", "coach")
        .with_env("POSTGRES_PASSWORD", password)
        .with_bind_ports(5432, port)
    )
    with running(pg), tempfile.TemporaryDirectory() as scratch:
        dsn = f"host=127.0.0.1 port={port} user=coach dbname=coach password={password}"

        wait_for_postgres(dsn)
        env = {
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(port),
            "POSTGRES_PASSWORD": password,
            "DATA_DIR": str(Path(scratch) / "data"),
        }
        settings = Settings(
            postgres_host="127.0.0.1",
            postgres_port=port,
            postgres_password=SecretStr(password),
            data_dir=Path(scratch) / "data",
        )
        asyncio.run(migrate(settings))
        yield str(pg.get_wrapped_container().id), dsn, settings, env


def generate(dsn: str, *, snippets: int, filler_mb: int) -> float:
    """Snippets with their chunks (code-like text), then filler rows up to `filler_mb`.
    Returns the database size in MB."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Written a day ago, as real data is: a reindex's catch-up (snippets changed while it
        # ran) then has nothing to redo, where rows written a second ago would all be redone.
        conn.execute(
            """
            INSERT INTO snippets (id, title, language, object_key, sha256, size_bytes, status,
                                  chunk_count, created_at, updated_at)
            SELECT gen_random_uuid(), 'bench ' || i, 'python', 'snippets/bench-' || i,
                   md5(i::text) || md5(i::text), 2000, 'indexed', %s,
                   now() - interval '1 day', now() - interval '1 day'
            FROM generate_series(1, %s) AS i
            """,
            (CHUNKS_PER_SNIPPET, snippets),
        )
        conn.execute(
            """
            INSERT INTO chunks (id, snippet_id, ordinal, text, start_line, end_line, content_hash)
            SELECT gen_random_uuid(), s.id, o,
                   repeat('def step_' || md5(random()::text) || E'(state):\n    return state + '
                          || o || E'\n', 20),
                   o * 40 + 1, o * 40 + 40, md5(s.id::text || o)
            FROM snippets AS s CROSS JOIN generate_series(0, %s) AS o
            """,
            (CHUNKS_PER_SNIPPET - 1,),
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_filler (id bigserial PRIMARY KEY, body text)"
        )
        rows = filler_mb * 1_000_000 // (ROW_BYTES + 40)  # 40: tuple header and id
        conn.execute(
            """
            INSERT INTO bench_filler (body)
            SELECT encode(sha512((i || 'a')::bytea), 'hex') || encode(sha512((i || 'b')::bytea),
                   'hex') || encode(sha512((i || 'c')::bytea), 'hex')
                   || encode(sha512((i || 'd')::bytea), 'hex')
            FROM generate_series(1, %s) AS i
            """,
            (rows,),
        )
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert size is not None
    return float(size[0]) / 1e6


def raw_dump(container_id: str, path: Path) -> float:
    started = time.perf_counter()
    with path.open("wb") as out:
        subprocess.run(
            ["docker", "exec", container_id, "pg_dump", "-Fc", "-U", "coach", "-d", "coach"],
            stdout=out,
            check=True,
        )
    return time.perf_counter() - started


def raw_restore(container_id: str, path: Path) -> float:
    started = time.perf_counter()
    with path.open("rb") as source:
        subprocess.run(
            ["docker", "exec", "-i", container_id, "pg_restore", "--clean", "--if-exists",
             "--single-transaction", "--exit-on-error", "-U", "coach", "-d", "coach"],
            stdin=source,
            check=True,
        )  # fmt: skip
    subprocess.run(
        ["docker", "exec", container_id, "psql", "-U", "coach", "-d", "coach", "-qc", "ANALYZE"],
        check=True,
    )
    return time.perf_counter() - started


def backup_restore(scratch: Path) -> list[tuple[str, ...]]:
    with database() as (container_id, dsn, _settings, env):
        db_mb = generate(dsn, snippets=SNIPPETS, filler_mb=DB_MB)
        target = ContainerTarget(container_id, env, Writers.none())
        quiet = Reporter(progress_every_s=3600)
        raw_file = scratch / "raw.dump"
        raw_dump_s = raw_dump(container_id, raw_file)
        raw_restore_s = raw_restore(container_id, raw_file)
        ours = backup(target, scratch / "backups", reporter=quiet)
        plain = restore(
            target, ours.path, yes=True, safety_backup=False, backups_root=scratch / "backups",
            reporter=quiet,
        )  # fmt: skip
        default = restore(
            target, ours.path, yes=True, backups_root=scratch / "backups", reporter=quiet
        )
        assert plain.ok and default.ok

    def row(what: str, seconds: float, raw: float) -> tuple[str, ...]:
        return (what, f"{seconds:.1f}", f"{db_mb / seconds:.1f}", f"{raw / seconds:.2f}")

    print(
        f"database {db_mb:.0f} MB ({ours.manifest.tables['chunks']} chunks); "
        f"dump {raw_file.stat().st_size / 1e6:.0f} MB"
    )
    return [
        row("raw pg_dump -Fc", raw_dump_s, raw_dump_s),
        row("ours: backup", ours.seconds, raw_dump_s),
        row("raw pg_restore + ANALYZE", raw_restore_s, raw_restore_s),
        row("ours: restore, no safety backup", plain.seconds, raw_restore_s),
        row("ours: restore (with its safety backup)", default.seconds, raw_restore_s),
    ]


def reindex_rate() -> tuple[int, float]:
    with database() as (_container_id, dsn, settings, _env):
        generate(dsn, snippets=REINDEX_SNIPPETS, filler_mb=0)
        result = reindex(settings, batch=512, reporter=Reporter(progress_every_s=5))
    return result.points, result.points_per_second


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        rows = backup_restore(Path(scratch))
    print(table(["measure", "seconds", "MB/s", "throughput vs raw"], rows))
    points, rate = reindex_rate()
    print(
        table(
            ["measure", "points", "points/s"],
            [("reindex (hashing embedder, Qdrant local mode)", points, f"{rate:.0f}")],
        )
    )


if __name__ == "__main__":
    main()
