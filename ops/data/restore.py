"""Restore a backup made by ops.backup, in an order an operator can trust:

1. Prove the backup whole (every sha256 in the manifest), its schema revision known to this
   code and its dump readable by the server's pg_restore. Any doubt: refuse, nothing touched.
2. Ask (--yes, or a typed confirmation on a terminal).
3. Take a safety backup of what is there now.
4. Stop the writers; restore PostgreSQL (one transaction), the objects, the schema migrations
   and the vectors (snapshot or rebuild); verify; and always start the writers again.
5. Report: row counts, objects and vectors against the manifest. Any mismatch fails the run.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError as AlembicCommandError

from coach.migrate import alembic_config, head_revision, migrate
from coach.objects import ObjectStore
from coach.settings import Settings
from coach.vectors import VectorStore
from ops.console import Reporter, human_size, table
from ops.data import postgres, qdrant
from ops.data.backup import DEFAULT_ROOT, PARALLEL_OBJECTS, SAFETY_LABEL, backup
from ops.data.manifest import DUMP, TABLES, Manifest, verify
from ops.data.reindex import reindex
from ops.data.target import Target
from ops.errors import OpsError


class RestoreRefused(OpsError):
    pass


@dataclass(frozen=True)
class Check:
    what: str
    expected: object
    actual: object

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


class VerificationFailed(OpsError):
    def __init__(self, checks: list[Check]) -> None:
        failed = [c.what for c in checks if not c.ok]
        super().__init__(f"restored, but verification failed: {', '.join(failed)}")
        self.checks = checks


@dataclass(frozen=True)
class RestoreResult:
    backup: Path
    manifest: Manifest
    safety_backup: Path | None
    stopped: list[str]
    migrated: tuple[str | None, str] | None  # (from, to) when migrations ran
    vectors: str  # how they came back: "snapshot" or "reindex"
    checks: list[Check]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass(frozen=True)
class _Plan:
    """What the checks before any change established."""

    manifest: Manifest
    settings: Settings
    migration: Settings  # the migrate step's: the schema's owner and the roles
    items: int  # table-of-contents entries of the dump: what pg_restore works through
    needs_migration: bool
    vectors: str  # "snapshot" or "reindex"
    why: str


def restore(
    target: Target,
    directory: Path,
    *,
    yes: bool = False,
    dry_run: bool = False,
    confirm: Callable[[str], bool] | None = None,
    safety_backup: bool = True,
    backups_root: Path = DEFAULT_ROOT,
    reporter: Reporter | None = None,
) -> RestoreResult:
    """Replace the target's database, objects and vectors with the backup in `directory`.
    Without `yes`, `confirm` (a prompt on a terminal) must agree, or nothing happens.
    `dry_run`: the whole preflight, then what would be replaced; nothing changes."""
    reporter = reporter or Reporter()
    started = time.monotonic()
    plan = _preflight(target, directory, reporter)
    manifest = plan.manifest
    if dry_run:
        return _dry_run(
            target,
            directory,
            plan,
            safety_backup=safety_backup,
            backups_root=backups_root,
            reporter=reporter,
            started=started,
        )
    question = (
        f"Replace the database, objects and vectors of {target.name} with backup "
        f"{manifest.name} (taken {manifest.created_at})?"
    )
    if not yes and not (confirm is not None and confirm(question)):
        raise RestoreRefused(f"{question} Not confirmed: pass --yes to restore; nothing changed")

    safety = None
    if safety_backup:
        reporter.event("safety-backup", "taking a safety backup of the current state first")
        safety = backup(target, backups_root, label=SAFETY_LABEL, reporter=reporter).path
    stopped = target.stop_writers()
    reporter.event(
        "writers-stopped", f"writers stopped: {', '.join(stopped) or 'none'}", stopped=stopped
    )
    try:
        migrated, vectors, checks = _replace(target, directory, plan, reporter)
    except BaseException:
        # Whatever failed, the app comes back; a failure to bring it back is reported without
        # hiding the one that matters (why the restore stopped).
        try:
            target.start_writers(stopped)
        except Exception as exc:
            reporter.error(f"could not start the writers again ({', '.join(stopped)}): {exc}")
        raise
    target.start_writers(stopped)
    reporter.event("writers-started", f"writers started: {', '.join(stopped) or 'none'}")
    result = RestoreResult(
        directory, manifest, safety, stopped, migrated, vectors, checks, time.monotonic() - started
    )
    rows = [(c.what, c.expected, c.actual, "ok" if c.ok else "MISMATCH") for c in checks]
    reporter.result(
        table(["check", "expected", "actual", "result"], rows)
        + f"\n\nrestored {manifest.name} in {result.seconds:.1f}s"
        + (f"; safety backup: {safety}" if safety else ""),
        ok=result.ok,
        backup=str(directory),
        safety_backup=str(safety) if safety else None,
        seconds=round(result.seconds, 3),
        checks=[
            {"check": c.what, "expected": c.expected, "actual": c.actual, "ok": c.ok}
            for c in checks
        ],
    )
    if not result.ok:
        raise VerificationFailed(checks)
    return result


def _dry_run(
    target: Target,
    directory: Path,
    plan: _Plan,
    *,
    safety_backup: bool,
    backups_root: Path,
    reporter: Reporter,
    started: float,
) -> RestoreResult:
    """Say what a restore would replace, from the preflight's findings; change nothing."""
    manifest = plan.manifest
    now = postgres.counts(target)
    head = head_revision()
    rows = [
        *[(f"rows in {t}", now[t], manifest.tables[t]) for t in TABLES],
        ("objects", "all replaced", manifest.objects.get("count", 0)),
        ("schema revision", manifest.alembic_revision, head if plan.needs_migration else "-"),
        ("pg_restore items", "-", plan.items),
        ("vectors", "rebuilt" if plan.vectors == "reindex" else "replaced", plan.why),
        ("safety backup", "-", f"into {backups_root}" if safety_backup else "skipped"),
    ]
    reporter.result(
        table(["what", "now", "after the restore"], rows)
        + f"\n\ndry run: backup {manifest.name} verified and readable; nothing changed",
        dry_run=True,
        backup=str(directory),
        tables_now=now,
        tables_after=manifest.tables,
        migrate_to=head if plan.needs_migration else None,
        pg_restore_items=plan.items,
        vectors=plan.vectors,
    )
    return RestoreResult(
        directory, manifest, None, [], None, plan.vectors, [], time.monotonic() - started
    )


def _preflight(target: Target, directory: Path, reporter: Reporter) -> _Plan:
    """Everything that can be known before a change, checked; any doubt raises."""
    reporter.event("verify", f"verifying {directory} against its manifest", path=str(directory))
    manifest = verify(directory)
    reporter.event(
        "verified",
        f"all {len(manifest.files)} files match the manifest (backup {manifest.name}, "
        f"revision {manifest.alembic_revision}, "
        + ", ".join(f"{manifest.tables[t]} {t}" for t in TABLES)
        + ")",
        files=len(manifest.files),
    )
    needs_migration = _needs_migration(manifest.alembic_revision)
    items = postgres.check_archive(target, directory / DUMP)
    if not target.can_stop_writers:
        raise RestoreRefused(
            f"{target.name}: no way to stop the writers was given (--stop-cmd/--start-cmd, or "
            "--no-writers when nothing writes)"
        )
    settings, migration = target.settings(), target.migration_settings()
    if migration.embedded:
        # Every restore ends with the migrate step (owners, grants, schema) on the PostgreSQL
        # just restored; settings without POSTGRES_HOST would migrate a local SQLite file.
        raise RestoreRefused(
            f"{target.name}: the migrate step's settings name no PostgreSQL (POSTGRES_HOST is "
            "not set), so owners and grants could not be restored; set POSTGRES_HOST, "
            "POSTGRES_USER and POSTGRES_PASSWORD_FILE for the database restored into"
        )
    vectors, why = _vectors_plan(manifest, settings)
    return _Plan(manifest, settings, migration, items, needs_migration, vectors, why)


def _replace(
    target: Target, directory: Path, plan: _Plan, reporter: Reporter
) -> tuple[tuple[str | None, str] | None, str, list[Check]]:
    """The writers are stopped: database, objects, schema, vectors, then the checks.
    Returns (migration done, how the vectors came back, checks)."""
    manifest, settings = plan.manifest, plan.settings
    dump = directory / DUMP
    size, items = dump.stat().st_size, plan.items

    def fed(sent: int, restored: int) -> None:
        restored = min(restored, items)  # never past the end, whatever pg_restore prints
        reporter.progress(
            "postgres",
            f"pg_restore: {restored}/{items} items, {human_size(sent)} of {human_size(size)} read",
            completed=restored,
            total=items,
            unit="items",
            bytes=sent,
            size=size,
        )

    postgres.restore(target, dump, progress=fed)
    # Exit status 0 of one transaction stopping at the first error: every item is in.
    reporter.progress(
        "postgres",
        "database restored and analysed",
        done=True,
        completed=items,
        total=items,
        unit="items",
        bytes=size,
    )
    uploaded, deleted = asyncio.run(_restore_objects(settings, manifest, directory, reporter))
    reporter.progress(
        "objects",
        f"objects restored: {uploaded} written, {deleted} not in the backup deleted",
        done=True,
        completed=uploaded,
        total=uploaded,
        unit="objects",
        written=uploaded,
        deleted=deleted,
    )
    # Always the migrate step, as it runs in the stack: besides a schema older than this code,
    # it gives the tables back to their owner role and the app its grants (a backup from before
    # the least-privilege roles holds tables of the superuser, and no grant).
    steps = asyncio.run(migrate(plan.migration))
    migrated = steps if plan.needs_migration else None
    if migrated is not None:
        reporter.event(
            "migrated", f"schema migrated {migrated[0]} -> {migrated[1]}", revision=migrated[1]
        )
    reporter.event("vectors", f"vectors: {plan.why}", how=plan.vectors)
    vectors = plan.vectors
    if vectors == "snapshot":
        vectors = _recover_snapshot(settings, manifest, directory, reporter)
    if vectors == "reindex":
        reindex(settings, fresh=True, reporter=reporter)
    target.after_writes()
    return migrated, vectors, _checks(target, settings, manifest, directory, migrated)


def _needs_migration(revision: str | None) -> bool:
    """Whether the restored schema must be migrated to head; refuses a revision this code does
    not know (a backup from a newer release: its schema cannot be run by this one)."""
    head = head_revision()
    if revision == head:
        return False
    if revision is not None:
        try:
            ScriptDirectory.from_config(alembic_config()).get_revision(revision)
        except AlembicCommandError as exc:
            raise RestoreRefused(
                f"the backup's schema revision {revision} is unknown to this code (head is "
                f"{head}): restore it with the release that made it; nothing changed"
            ) from exc
    return True


def _vectors_plan(manifest: Manifest, settings: Settings) -> tuple[str, str]:
    snapshot = manifest.vectors.get("snapshot")
    if not snapshot:
        return "reindex", "no snapshot in the backup; rebuilding from the chunks table"
    if not settings.qdrant_url:
        return "reindex", "no Qdrant server here (local mode); rebuilding from the chunks table"
    with qdrant.client(settings, timeout=10) as http:
        here = qdrant.version(http)
    made = str(manifest.vectors.get("qdrant_version", "?"))
    if not qdrant.same_minor(here, made):
        return "reindex", f"snapshot from Qdrant {made}, server is {here}; rebuilding instead"
    return "snapshot", f"recovering the snapshot of {manifest.vectors.get('collection')}"


def _recover_snapshot(
    settings: Settings, manifest: Manifest, directory: Path, reporter: Reporter
) -> str:
    """Recover into a new collection and swap the alias to it; "reindex" when the recovered
    points do not match the chunks table after all."""
    vectors = VectorStore(settings)
    name = vectors.new_collection_name()
    with qdrant.client(settings) as http:
        qdrant.recover(http, name, directory / str(manifest.vectors["snapshot"]))
    points, chunks = vectors.count(name), manifest.tables["chunks"]
    if points != chunks:
        vectors.drop(name)
        reporter.event(
            "vectors", f"snapshot holds {points} points for {chunks} chunks; rebuilding instead"
        )
        return "reindex"
    previous = vectors.switch_alias(name)
    if previous is not None:
        vectors.drop(previous)
    reporter.event("vectors", f"snapshot recovered into {name} ({points} points)", points=points)
    return "snapshot"


async def _restore_objects(
    settings: Settings, manifest: Manifest, directory: Path, reporter: Reporter
) -> tuple[int, int]:
    """The store ends up holding exactly the backup's objects."""
    store = ObjectStore(settings)
    wanted = manifest.object_files()
    extra = sorted(set(await store.keys()) - wanted.keys())
    gate = asyncio.Semaphore(PARALLEL_OBJECTS)
    done = 0

    async def delete(key: str) -> None:
        async with gate:
            await store.delete(key)

    async def put(key: str, relative: str) -> None:
        nonlocal done
        data = (directory / relative).read_bytes()
        if hashlib.sha256(data).hexdigest() != manifest.files[relative].sha256:
            raise OpsError(f"{directory / relative} changed after verification; stopped")
        async with gate:
            await store.put(key, data)
        done += 1
        reporter.progress(
            "objects",
            f"objects: {done}/{len(wanted)}",
            completed=done,
            total=len(wanted),
            unit="objects",
            objects=done,
        )

    await asyncio.gather(*(delete(k) for k in extra))
    await asyncio.gather(*(put(k, r) for k, r in wanted.items()))
    return len(wanted), len(extra)


def _checks(
    target: Target,
    settings: Settings,
    manifest: Manifest,
    directory: Path,
    migrated: tuple[str | None, str] | None,
) -> list[Check]:
    """The restored state, read back, against what the manifest says was backed up."""
    counts = postgres.counts(target)
    checks = [Check(f"rows in {t}", manifest.tables[t], counts[t]) for t in TABLES]
    revision = next(iter(postgres.psql(target, postgres.REVISION_SQL)), "") or None
    checks.append(
        Check(
            "schema revision",
            migrated[1] if migrated else manifest.alembic_revision,
            revision,
        )
    )
    expected = {k: manifest.files[r].sha256 for k, r in manifest.object_files().items()}
    actual = asyncio.run(_object_digests(settings))
    checks.append(Check("objects", len(expected), len(actual)))
    differing = sum(actual.get(k) != sha for k, sha in expected.items())
    checks.append(Check("objects with a different sha256", 0, differing))
    vectors = VectorStore(settings)
    checks.append(Check("vectors (= chunk rows)", counts["chunks"], vectors.count()))
    return checks


async def _object_digests(settings: Settings) -> dict[str, str]:
    store = ObjectStore(settings)
    gate = asyncio.Semaphore(PARALLEL_OBJECTS)

    async def digest(key: str) -> tuple[str, str]:
        async with gate:
            return key, hashlib.sha256(await store.get_async(key)).hexdigest()

    return dict(await asyncio.gather(*(digest(k) for k in await store.keys())))
