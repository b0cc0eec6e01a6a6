"""Restore a backup made by ops.backup, in an order that cannot make things worse:

1. Prove the backup whole (every sha256 in the manifest), its schema revision known to this
   code and its dump readable by the server's pg_restore. Any doubt: refuse, nothing touched.
   `--dry-run` ends here: it takes no lock, stops nothing and writes nothing.
2. Ask (--yes, or a typed confirmation on a terminal).
3. Take the backups directory's lock (ops/data/backup.py `locked`) for the whole run: no backup
   from this host starts while the stores are half restored.
4. Stop the writers, and the scheduled backup services with them (coach.role=backup).
5. Only then take the safety backup: of exactly what the restore replaces, with nothing
   written after it. The command that puts it back is printed right away (a restore killed
   later prints nothing).
6. PostgreSQL into a fresh database beside the live one (`<db>_restoring`, from template0, in
   one transaction), then swapped in by rename and the old one dropped. Beside-and-swap rather
   than drop-and-recreate: until the swap the live database is untouched, so a pg_restore that
   fails or is killed leaves it as it was (a killed run's restoring database, and any
   pg_restore still feeding it, is dropped by the next restore); and since the database is
   new, nothing of the replaced one survives, not even a table a later migration made. The
   database-level grants and the schema's owners come back with the migrate step (7).
7. The objects: the backup's written first, then the ones it does not hold deleted (a failure
   midway leaves every object the backup has). Then the migrate step (always: owners and
   grants, coach/dbroles.py), the vectors (snapshot or rebuild), and the checks (rows, objects,
   vectors against the manifest). Then the writers start again.

Any failure once the writers are stopped leaves them stopped (the stores may be mixed: the app
must not serve them) and raises `RestoreFailed`, whose hint and `restore-failed` event name
the command that restores the safety backup and the one that starts the writers.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
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
from ops.data.backup import DEFAULT_ROOT, PARALLEL_OBJECTS, SAFETY_LABEL, backup, locked
from ops.data.manifest import DUMP, TABLES, Manifest, verify
from ops.data.private import private_dir
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
class Recovery:
    """The command lines that put things back by hand after a failed restore (the CLI derives
    them from how it was invoked: ops/cli/data.py)."""

    restore: Callable[[Path], str]  # restores this backup directory: no question, no safety copy
    start: Callable[[list[str]], str]  # starts these stopped writers again

    @classmethod
    def default(cls) -> Recovery:
        return cls(
            lambda path: shlex.join(
                ["./run", "invoke", "restore", "--backup", str(path), "--yes", "--no-safety-backup"]
            ),
            lambda stopped: f"start the writers again: {', '.join(stopped) or 'none'}",
        )


class RestoreFailed(OpsError):
    """A restore that failed once the writers were stopped: they stay stopped, and the hint
    says how to put the state before it back and start them."""

    def __init__(self, message: str, *, hint: str, restore_command: str | None, start: str):
        super().__init__(message, hint=hint)
        self.restore_command = restore_command
        self.start_command = start


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
    recovery: Recovery | None = None,
    reporter: Reporter | None = None,
) -> RestoreResult:
    """Replace the target's database, objects and vectors with the backup in `directory`.
    Without `yes`, `confirm` (a prompt on a terminal) must agree, or nothing happens.
    `dry_run`: the whole preflight, then what would be replaced; nothing changes.
    `recovery`: the command lines printed when it fails after the writers stopped."""
    reporter = reporter or Reporter()
    recovery = recovery or Recovery.default()
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

    private_dir(backups_root, parents=True, exist_ok=True)
    with locked(backups_root):
        stopped = target.stop_writers()
        reporter.event(
            "writers-stopped", f"writers stopped: {', '.join(stopped) or 'none'}", stopped=stopped
        )
        safety: Path | None = None
        touched = False  # whether the live stores changed yet
        try:
            if safety_backup:
                reporter.event("safety-backup", "taking a safety backup of the current state")
                safety = backup(
                    target, backups_root, label=SAFETY_LABEL, reporter=reporter, lock=False
                ).path
                again = recovery.restore(safety)
                reporter.event(
                    "recovery",
                    f"safety backup {safety}; should this restore fail or be killed, `{again}` "
                    "puts it back",
                    safety_backup=str(safety),
                    restore_command=again,
                    start_command=recovery.start(stopped),
                )
            touched = True
            migrated, vectors, checks = _replace(target, directory, plan, reporter)
            result = RestoreResult(
                directory,
                manifest,
                safety,
                stopped,
                migrated,
                vectors,
                checks,
                time.monotonic() - started,
            )
            _report(reporter, result)
            if not result.ok:
                raise VerificationFailed(checks)
        except BaseException as exc:
            failure = _failed(
                exc,
                safety=safety,
                stopped=stopped,
                touched=touched,
                recovery=recovery,
                reporter=reporter,
            )
            if isinstance(exc, Exception):
                raise failure from exc
            reporter.error(str(failure), failure.hint)  # Ctrl-C: the way back, then out
            raise
        target.start_writers(stopped)
        reporter.event(
            "writers-started", f"writers started: {', '.join(stopped) or 'none'}", started=stopped
        )
    return result


def _report(reporter: Reporter, result: RestoreResult) -> None:
    rows = [(c.what, c.expected, c.actual, "ok" if c.ok else "MISMATCH") for c in result.checks]
    safety = result.safety_backup
    reporter.result(
        table(["check", "expected", "actual", "result"], rows)
        + f"\n\nrestored {result.manifest.name} in {result.seconds:.1f}s"
        + (f"; safety backup: {safety}" if safety else ""),
        ok=result.ok,
        backup=str(result.backup),
        safety_backup=str(safety) if safety else None,
        seconds=round(result.seconds, 3),
        checks=[
            {"check": c.what, "expected": c.expected, "actual": c.actual, "ok": c.ok}
            for c in result.checks
        ],
    )


def _failed(
    exc: BaseException,
    *,
    safety: Path | None,
    stopped: list[str],
    touched: bool,
    recovery: Recovery,
    reporter: Reporter,
) -> RestoreFailed:
    """The failure once the writers are stopped: they stay stopped (the stores may be half
    restored), and the operator learns the two commands that put things back."""
    start = recovery.start(stopped)
    again = recovery.restore(safety) if safety is not None else None
    cause = str(exc) or type(exc).__name__
    message = f"restore failed: {cause}; the writers stay stopped ({', '.join(stopped) or 'none'})"
    if again is not None:
        hint = (
            f"put the state before the restore back: `{again}`; then start the writers: `{start}`"
        )
    elif touched:
        hint = (
            "no safety backup was taken (--no-safety-backup): restore a backup you trust "
            f"(`invoke backup --list`), then start the writers: `{start}`"
        )
    else:
        hint = f"nothing was changed yet: start the writers again: `{start}`"
    reporter.event(
        "restore-failed",
        message,
        safety_backup=str(safety) if safety else None,
        restore_command=again,
        start_command=start,
        stopped=stopped,
    )
    return RestoreFailed(message, hint=hint, restore_command=again, start=start)


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
    postgres.restoring_name(target)  # a live name too long to restore beside: refused now
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
            "pg_restore",
            f"pg_restore: {restored}/{items} items, {human_size(sent)} of {human_size(size)} read",
            completed=restored,
            total=items,
            unit="items",
            bytes=sent,
            size=size,
        )

    try:
        postgres.restore(target, dump, progress=fed)
    except Exception:
        _drop_restoring(target, reporter)
        raise
    postgres.swap_in_restored(target)  # from here on the live database is the backup's
    # Exit status 0 of one transaction stopping at the first error: every item is in.
    reporter.progress(
        "pg_restore",
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


def _drop_restoring(target: Target, reporter: Reporter) -> None:
    """A failed pg_restore's database goes (the live one was never touched)."""
    try:
        postgres.drop_restoring(target)
    except Exception as exc:  # the next restore drops it: not the failure that matters
        reporter.event("cleanup", f"could not drop the restoring database: {exc}")


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

    # The backup's objects first: a failure midway leaves every one of them, never fewer.
    await asyncio.gather(*(put(k, r) for k, r in wanted.items()))
    await asyncio.gather(*(delete(k) for k in extra))
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
