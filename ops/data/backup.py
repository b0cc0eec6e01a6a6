"""Backups: one timestamped directory per backup, holding

    postgres.dump        pg_dump -Fc, run inside the postgres container
    objects/<key>        every object of the object store
    qdrant/<c>.snapshot  a snapshot of the collection behind the alias (Qdrant server only)
    manifest.json        versions, revision, row counts, and sha256 + size of every file
    offsite.json         once copied off-site: where to, and the sha256 of what was sent

It is written into `<name>.partial` and renamed only once complete, so a directory without
that suffix is always a whole backup. The dump and the row counts come from one exported
snapshot of the database, so the manifest describes exactly the rows the dump holds.
Directories are 0700 and files 0600 from the moment they exist (ops/data/private.py): a backup
is every snippet and question.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import coach
from coach.objects import ObjectStore
from coach.settings import Settings
from coach.vectors import VectorStore
from ops.console import Reporter, human_size
from ops.data import offsite, postgres, qdrant
from ops.data.manifest import (
    DUMP,
    MANIFEST,
    QDRANT,
    TABLES,
    FileEntry,
    Manifest,
    object_path,
    sha256_file,
)
from ops.data.offsite import Destination
from ops.data.private import private_dir, private_open, write_private
from ops.data.target import Target
from ops.errors import OpsError
from ops.paths import ROOT

DEFAULT_ROOT = ROOT / "backups"
PARTIAL = ".partial"
STAMP = "%Y%m%dT%H%M%SZ"
NAME = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)(?:-[a-z0-9-]+)?$")
PARALLEL_OBJECTS = 8
SAFETY_LABEL = "pre-restore"  # restore's backup of the state it replaces
SAFETY_KEEP = 2  # safety copies retention always keeps, apart from --keep


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: Manifest
    seconds: float
    size: int  # bytes of all files
    uploaded: str | None = None
    removed: tuple[Path, ...] = ()

    @property
    def mb_per_s(self) -> float:
        return self.size / 1e6 / self.seconds if self.seconds else 0.0


def backup(
    target: Target,
    root: Path = DEFAULT_ROOT,
    *,
    label: str = "",
    keep: int | None = None,
    keep_days: float | None = None,
    offsite_to: Destination | None = None,
    reporter: Reporter | None = None,
    lock: bool = True,
) -> BackupResult:
    """Back up `target` into a new directory under `root`; then copy it off-site
    (`offsite_to`, every object read back and checked) and apply retention (`keep` newest
    and/or those newer than `keep_days`). Raises on any failure, leaving no directory that
    looks complete. `lock=False`: the caller holds `locked(root)` already (a restore holds it
    from before its safety backup to its end)."""
    reporter = reporter or Reporter()
    if keep is not None and keep < 1:
        raise OpsError("--keep must be at least 1: the backup just made is always kept")
    started = time.monotonic()
    private_dir(root, parents=True, exist_ok=True)
    with locked(root) if lock else nullcontext():
        for stale in root.glob(f"*{PARTIAL}"):  # a killed earlier run: never complete
            reporter.event("stale", f"removing unfinished {stale.name}", path=str(stale))
            shutil.rmtree(stale)
        name = _new_name(root, label)
        partial = private_dir(root / f"{name}{PARTIAL}")
        try:
            reporter.event(
                "start", f"backing up {target.name} into {root / name}", path=str(root / name)
            )
            manifest = _write(target, partial, name, reporter)
            write_private(partial / MANIFEST, manifest.dumps().encode())
            final = partial.rename(root / name)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        size = sum(entry.size for entry in manifest.files.values())
        seconds = time.monotonic() - started
        reporter.event(
            "complete",
            f"backup complete: {final} ({human_size(size)} in {seconds:.1f}s)",
            path=str(final),
            bytes=size,
            seconds=round(seconds, 3),
        )
        uploaded = _offsite(final, manifest, offsite_to, reporter) if offsite_to else None
        removed = tuple(apply_retention(root, keep=keep, keep_days=keep_days, reporter=reporter))
    return BackupResult(final, manifest, seconds, size, uploaded, removed)


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """One backup (or restore's safety backup) at a time per directory."""
    with private_open(root / ".lock", "ab") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise OpsError(f"another backup is writing into {root}") from exc
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _new_name(root: Path, label: str) -> str:
    stamp = datetime.now(UTC)
    suffix = f"-{label}" if label else ""
    while (root / f"{stamp.strftime(STAMP)}{suffix}").exists():
        stamp += timedelta(seconds=1)  # two backups within one second: names stay sortable
    return f"{stamp.strftime(STAMP)}{suffix}"


def _write(target: Target, directory: Path, name: str, reporter: Reporter) -> Manifest:
    settings = target.settings()
    files: dict[str, FileEntry] = {}
    with postgres.Snapshot(target) as snap:
        revision = snap.query(postgres.REVISION_SQL) or None
        tables = dict(
            zip(TABLES, map(int, snap.query(postgres.COUNTS_SQL).split("|")), strict=True)
        )
        server = snap.query("SHOW server_version")

        def dumped(n: int) -> None:
            # The dump's size is known only at its end: a count and a rate, no bar to fill.
            reporter.progress(
                "postgres", f"pg_dump: {human_size(n)} written", completed=n, unit="bytes", bytes=n
            )

        sha = postgres.dump(target, directory / DUMP, snapshot=snap.id, progress=dumped)
    files[DUMP] = FileEntry(sha, (directory / DUMP).stat().st_size)
    reporter.progress(
        "postgres",
        f"database dumped: {human_size(files[DUMP].size)}, "
        + ", ".join(f"{n} {t}" for t, n in tables.items()),
        done=True,
        completed=files[DUMP].size,
        unit="bytes",
        bytes=files[DUMP].size,
        tables=tables,
    )
    objects, kind = asyncio.run(_download_objects(settings, directory, reporter))
    files |= objects
    vectors, snapshot_files = _snapshot_vectors(settings, directory, reporter)
    files |= snapshot_files
    return Manifest(
        name=name,
        created_at=datetime.now(UTC).isoformat(),
        app_version=coach.__version__,
        alembic_revision=revision,
        tables=tables,
        objects={
            "count": len(objects),
            "bytes": sum(e.size for e in objects.values()),
            "store": kind,
        },
        vectors=vectors,
        tools={
            "pg_dump": postgres.tool_version(target, "pg_dump"),
            "postgres_server": server,
        },
        files=files,
    )


async def _download_objects(
    settings: Settings, directory: Path, reporter: Reporter
) -> tuple[dict[str, FileEntry], str]:
    store = ObjectStore(settings)
    keys = await store.keys()
    files: dict[str, FileEntry] = {}
    gate = asyncio.Semaphore(PARALLEL_OBJECTS)
    total_bytes = 0

    async def fetch(key: str) -> None:
        nonlocal total_bytes
        relative = object_path(key)
        async with gate:
            try:
                data = await store.get_async(key)
            except FileNotFoundError:  # deleted since the listing (a failed upload undone)
                reporter.event("object-vanished", f"object {key} vanished mid-backup", key=key)
                return
        path = directory / relative
        private_dir(path.parent, parents=True, exist_ok=True)
        write_private(path, data)
        files[relative] = FileEntry(hashlib.sha256(data).hexdigest(), len(data))
        total_bytes += len(data)
        reporter.progress(
            "objects",
            f"objects: {len(files)}/{len(keys)}, {human_size(total_bytes)}",
            completed=len(files),
            total=len(keys),
            unit="objects",
            objects=len(files),
            bytes=total_bytes,
        )

    await asyncio.gather(*(fetch(k) for k in keys))
    reporter.progress(
        "objects",
        f"objects saved: {len(files)} ({human_size(total_bytes)}) from the {store.kind} store",
        done=True,
        completed=len(files),
        total=len(keys),
        unit="objects",
        objects=len(files),
        bytes=total_bytes,
    )
    return files, store.kind


def _snapshot_vectors(
    settings: Settings, directory: Path, reporter: Reporter
) -> tuple[dict[str, Any], dict[str, FileEntry]]:
    vectors = VectorStore(settings)
    collection = vectors.target()
    if vectors.kind != "server" or collection is None:
        note = (
            "Qdrant local mode has no snapshots"
            if vectors.kind != "server"
            else "no collection behind the alias yet"
        ) + ": a restore rebuilds the vectors from the chunks table"
        reporter.event("vectors-skipped", f"vectors: {note}", note=note)
        return {"mode": vectors.kind, "collection": collection, "snapshot": None, "note": note}, {}
    relative = f"{QDRANT}/{collection}.snapshot"
    private_dir(directory / QDRANT)
    with qdrant.client(settings) as http:
        server_version = qdrant.version(http)
        qdrant.snapshot(
            http,
            collection,
            directory / relative,
            lambda n: reporter.progress(
                "qdrant", f"qdrant snapshot: {human_size(n)}", completed=n, unit="bytes", bytes=n
            ),
        )
    entry = FileEntry(sha256_file(directory / relative), (directory / relative).stat().st_size)
    points = vectors.count(collection)
    reporter.progress(
        "qdrant",
        f"qdrant snapshot of {collection}: {points} points, {human_size(entry.size)}",
        done=True,
        completed=entry.size,
        unit="bytes",
        points=points,
        bytes=entry.size,
    )
    info = {
        "mode": "server",
        "collection": collection,
        "snapshot": relative,
        "points": points,
        "qdrant_version": server_version,
    }
    return info, {relative: entry}


def complete_backups(root: Path) -> list[Path]:
    """Whole backups under `root`, oldest first (names sort by time)."""
    if not root.is_dir():
        return []
    return sorted(
        (
            p
            for p in root.iterdir()
            if p.is_dir() and NAME.match(p.name) and (p / MANIFEST).is_file()
        ),
        key=lambda p: p.name,
    )


def created_at(path: Path) -> datetime:
    match = NAME.match(path.name)
    if match is None:
        raise OpsError(f"{path.name} is not a backup name (YYYYMMDDTHHMMSSZ[-label])")
    return datetime.strptime(match["stamp"], STAMP).replace(tzinfo=UTC)


def is_safety_copy(path: Path) -> bool:
    """A restore's safety backup of the state it replaced (`<stamp>-pre-restore`)."""
    return path.name.endswith(f"-{SAFETY_LABEL}")


def expired(
    backups: list[Path], *, keep: int | None, keep_days: float | None, now: datetime
) -> list[Path]:
    """Backups no rule keeps: not among the `keep` newest and not newer than `keep_days`.
    With neither rule set, none. Safety copies are counted apart, so failed restores never push
    good backups out of `keep`: the `SAFETY_KEEP` newest of them stay (whatever `keep`), older
    ones only while `keep_days` keeps them. Newest first."""
    if keep is None and keep_days is None:
        return []
    safety = [p for p in backups if is_safety_copy(p)]
    good = [p for p in backups if not is_safety_copy(p)]
    gone = _not_kept(good, keep, keep_days, now) + _not_kept(safety, SAFETY_KEEP, keep_days, now)
    return sorted(gone, key=created_at, reverse=True)


def _not_kept(
    backups: list[Path], keep: int | None, keep_days: float | None, now: datetime
) -> list[Path]:
    newest_first = sorted(backups, key=created_at, reverse=True)
    gone = []
    for index, path in enumerate(newest_first):
        by_count = keep is not None and index < keep
        by_age = keep_days is not None and created_at(path) >= now - timedelta(days=keep_days)
        if not (by_count or by_age):
            gone.append(path)
    return gone


def apply_retention(
    root: Path, *, keep: int | None, keep_days: float | None, reporter: Reporter
) -> list[Path]:
    gone = expired(complete_backups(root), keep=keep, keep_days=keep_days, now=datetime.now(UTC))
    for path in gone:
        (path / MANIFEST).unlink()  # first: a half-deleted backup no longer looks whole
        shutil.rmtree(path)
        reporter.event("removed", f"retention: removed {path.name}", path=str(path))
    return gone


def copy_offsite(path: Path, to: Destination, reporter: Reporter) -> str:
    """The off-site copy of a complete backup already on disk (a scheduled backup's, made
    apart from it so that an off-site outage costs the local backup nothing)."""
    return _offsite(path, Manifest.loads((path / MANIFEST).read_text()), to, reporter)


def _offsite(path: Path, manifest: Manifest, to: Destination, reporter: Reporter) -> str:
    """The off-site copy, its encrypted files staged in a scratch directory beside the backup
    (same disk; a killed run leaves a *.partial that the next backup removes)."""
    scratch = private_dir(path.parent / f".{path.name}-offsite{PARTIAL}")
    try:
        return offsite.upload(path, manifest, to, scratch, reporter).url
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fetch(
    root: Path,
    name: str,
    source: Destination,
    identity_file: Path | None,
    reporter: Reporter | None = None,
) -> Path:
    """Download the off-site copy of backup `name` into `root/name` (decrypted and verified
    against its manifest); then it restores like any local backup."""
    reporter = reporter or Reporter()
    if not NAME.match(name):
        raise OpsError(f"{name!r} is not a backup name (YYYYMMDDTHHMMSSZ[-label])")
    private_dir(root, parents=True, exist_ok=True)
    with locked(root):
        final = root / name
        if final.exists():
            raise OpsError(
                f"{final} exists already: restore it without --from-offsite, or move it away"
            )
        partial = root / f"{name}{PARTIAL}"
        shutil.rmtree(partial, ignore_errors=True)  # a fetch cut short earlier
        private_dir(partial)
        reporter.event("fetch", f"fetching {source.where(name)} into {final}", path=str(final))
        try:
            manifest = offsite.download(source, name, partial, identity_file, reporter)
            partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    size = sum(e.size for e in manifest.files.values())
    reporter.progress(
        "fetch",
        f"fetched {name}: {human_size(size)}, every file matches its manifest",
        done=True,
        completed=size,
        total=size,
        unit="bytes",
        bytes=size,
        path=str(final),
    )
    return final
