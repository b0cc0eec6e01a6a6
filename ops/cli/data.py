"""backup, restore, reindex and logs-clean: the data operations' command lines, shared by
`invoke <name>` and `./run python scripts/<name>.py`."""

from __future__ import annotations

import shlex
import sys
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from coach import logfiles
from coach.settings import get_settings
from ops.cli.common import ChangeOptions, JsonOption, TargetOptions, WriterOptions
from ops.cli.spec import Command, opt
from ops.console import Reporter, human_size, table
from ops.data.backup import DEFAULT_ROOT, backup, complete_backups, expired, fetch
from ops.data.logclean import clean
from ops.data.manifest import MANIFEST, Manifest
from ops.data.offsite import Destination
from ops.data.reindex import reindex
from ops.data.restore import Recovery, restore
from ops.errors import OpsError, UsageError
from ops.settings import get_settings as ops_settings

# --- backup ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupOptions(TargetOptions, ChangeOptions, JsonOption):
    dest: Path = opt(DEFAULT_ROOT, "backups directory", metavar="DIR", shown="./backups")
    keep: int | None = opt(None, "retention: keep the N newest", metavar="N")
    keep_days: int | None = opt(
        None,
        "retention: keep those newer than DAYS (with --keep: a backup goes when neither rule "
        "keeps it)",
        metavar="DAYS",
    )
    offsite: bool = opt(
        False,
        "also copy it off-site (COACH_OFFSITE_*; on for every backup with "
        "COACH_BACKUP_OFFSITE=true), encrypted to COACH_BACKUP_AGE_RECIPIENT when set, every "
        "object read back and its sha256 checked",
    )
    upload_to: str | None = opt(
        None,
        "the off-site destination instead of COACH_OFFSITE_URL (implies --offsite; still the "
        "COACH_OFFSITE_* credentials, never the app's)",
        metavar="s3://BUCKET/PREFIX",
    )
    list: bool = opt(False, "list the backups and exit", short="l")


def _list_backups(options: BackupOptions, reporter: Reporter) -> None:
    rows, found = [], []
    for path in complete_backups(options.dest):
        try:
            manifest = Manifest.loads((path / MANIFEST).read_text())
        except (OSError, ValueError, TypeError, KeyError) as exc:
            reporter.event(
                "unreadable", f"{path.name}: unreadable manifest ({exc})", path=str(path)
            )
            continue
        size = sum(f.size for f in manifest.files.values())
        counts = ", ".join(f"{n} {t}" for t, n in manifest.tables.items())
        rows.append((path.name, human_size(size), manifest.alembic_revision, counts))
        found.append({"name": path.name, "path": str(path), "bytes": size, **manifest.tables})
    reporter.result(table(["backup", "size", "revision", "rows"], rows), backups=found)


def _retention_plan(options: BackupOptions) -> list[Path]:
    """What retention would delete once one more backup exists (the new one is the newest)."""
    if options.keep is None and options.keep_days is None:
        return []
    if options.keep is not None and options.keep < 1:
        raise UsageError("--keep must be at least 1: the backup just made is always kept")
    existing = complete_backups(options.dest)
    keep = None if options.keep is None else options.keep - 1  # the new one is among the kept
    return expired(existing, keep=keep, keep_days=options.keep_days, now=datetime.now(UTC))


def _offsite_destination(options: BackupOptions) -> Destination | None:
    """Checked before the backup starts: a wrong off-site setting must not cost a backup."""
    settings = ops_settings()
    if not (options.offsite or options.upload_to or settings.backup_offsite):
        return None
    return Destination.from_settings(settings, options.upload_to)


def run_backup(options: BackupOptions, reporter: Reporter) -> None:
    if options.list:
        _list_backups(options, reporter)
        return
    going = _retention_plan(options)
    destination = _offsite_destination(options)
    if options.dry_run:
        reporter.result(
            "dry run: no backup made; retention would then delete "
            + (", ".join(p.name for p in going) or "nothing"),
            dry_run=True,
            would_remove=[str(p) for p in going],
        )
        return
    if going:
        options.confirm(
            f"After this backup, retention deletes {len(going)} backup(s) in {options.dest}: "
            + ", ".join(p.name for p in going)
            + "."
        )
    with closing(options.target()) as target:  # its tunnels close, also on Ctrl-C
        result = backup(
            target,
            options.dest,
            keep=options.keep,
            keep_days=options.keep_days,
            offsite_to=destination,
            reporter=reporter,
        )
    manifest = result.manifest
    rows = [
        ("directory", result.path),
        (
            "size",
            f"{human_size(result.size)} in {result.seconds:.1f}s ({result.mb_per_s:.1f} MB/s)",
        ),
        ("schema revision", manifest.alembic_revision),
        ("rows", ", ".join(f"{n} {t}" for t, n in manifest.tables.items())),
        ("objects", manifest.objects["count"]),
        ("vectors", manifest.vectors.get("snapshot") or manifest.vectors.get("note")),
        ("off-site copy", result.uploaded or "-"),
        ("removed by retention", ", ".join(p.name for p in result.removed) or "-"),
    ]
    reporter.result(
        table(["backup", ""], rows),
        path=str(result.path),
        bytes=result.size,
        seconds=round(result.seconds, 3),
        tables=manifest.tables,
        objects=manifest.objects["count"],
        alembic_revision=manifest.alembic_revision,
        uploaded=result.uploaded,
        removed=[str(p) for p in result.removed],
    )


BACKUP = Command(
    "backup",
    BackupOptions,
    run_backup,
    """Back up the Code Learning Coach into one timestamped directory.

It holds PostgreSQL (pg_dump -Fc, run inside the postgres container with the server's own
client), every object of the object store (objects/<key>), a Qdrant snapshot where a Qdrant
server runs (local mode: none; a restore rebuilds the vectors) and manifest.json: app version,
schema revision, row counts, tool versions, and the sha256 and size of every file.

The directory is written as <name>.partial and renamed only when complete: a directory without
that suffix is always a whole backup. Retention (--keep, --keep-days) deletes older backups
after the new one is complete; it asks first unless --yes, and --dry-run lists what it would
delete. A restore's safety copies (*-pre-restore) never count towards --keep: the two newest
stay, older ones only while --keep-days keeps them. Every directory is 0700 and every file 0600.

--offsite (or COACH_BACKUP_OFFSITE=true) then copies it to COACH_OFFSITE_URL with the
COACH_OFFSITE_* credentials (the secret key read from COACH_OFFSITE_SECRET_KEY_FILE), each file
encrypted to COACH_BACKUP_AGE_RECIPIENT(S_FILE) when set, and reads every object back: a sha256
that differs from what was sent fails the backup, naming the object. Exit status 0 when
complete, 1 otherwise.

examples:
  ./run invoke backup                                   # the development compose stack
  ./run invoke backup --keep 7 --keep-days 30 --yes     # then apply retention
  ./run invoke backup --prod --offsite                  # COACH_OFFSITE_URL and its keys
  ./run invoke backup --list                            # the backups there are
  ./run python scripts/backup.py --keep 7 --yes         # the same without Invoke
""",
)

# --- restore --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreOptions(WriterOptions, ChangeOptions, JsonOption):
    backup: str | None = opt(
        None,
        "the backup: its directory, or its name under --backups-dir (e.g. 20250101T030000Z)",
        short="b",
        metavar="NAME",
        required=True,
    )
    backups_dir: Path = opt(
        DEFAULT_ROOT, "where backups and the safety backup live", metavar="DIR", shown="./backups"
    )
    no_safety_backup: bool = opt(
        False,
        "skip the backup of the current state (when the current database cannot be dumped)",
    )
    from_offsite: bool = opt(
        False,
        "fetch backup NAME from the off-site copy (COACH_OFFSITE_*) into --backups-dir first: "
        "decrypted with COACH_BACKUP_AGE_IDENTITY_FILE, every file checked against its manifest",
    )


def backup_directory(name: str, backups_dir: Path) -> Path:
    """A backup named by path or by its name under `backups_dir`; a clear error otherwise."""
    for candidate in (Path(name), backups_dir / name):
        if candidate.is_dir():
            return candidate
    known = [p.name for p in complete_backups(backups_dir)][-3:]
    raise OpsError(
        f"no backup {name!r}: neither a directory nor a backup in {backups_dir}",
        hint=(f"the newest there: {', '.join(known)}; " if known else "")
        + f"`invoke backup --list --dest {backups_dir}` lists them",
    )


def _confirm_on_terminal(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{question}\nType 'restore' to go ahead: ").strip() == "restore"
    except EOFError:  # Ctrl-D: no answer is no
        return False


def run_restore(options: RestoreOptions, reporter: Reporter) -> None:
    assert options.backup is not None  # required: checked by Command.build
    if options.from_offsite:
        settings = ops_settings()
        directory = fetch(
            options.backups_dir,
            options.backup,
            Destination.from_settings(settings),
            settings.backup_age_identity_file,
            reporter,
        )
    else:
        directory = backup_directory(options.backup, options.backups_dir)
    with closing(options.target()) as target:
        restore(
            target,
            directory,
            yes=options.yes,
            dry_run=options.dry_run,
            confirm=_confirm_on_terminal,
            safety_backup=not options.no_safety_backup,
            backups_root=options.backups_dir,
            recovery=_recovery(options),
            reporter=reporter,
        )


def _recovery(options: RestoreOptions) -> Recovery:
    """The command lines a failed restore prints, with this invocation's flags: which stack or
    container, which writer commands, which backups directory."""
    if Path(sys.argv[0]).name == "restore.py":
        program = ["./run", "python", "scripts/restore.py"]
    else:
        program = ["./run", "invoke", "restore"]
    where: list[str] = []
    if options.postgres_container:
        where += ["--postgres-container", options.postgres_container]
        if options.no_writers:
            where.append("--no-writers")
        elif options.stop_cmd and options.start_cmd:
            where += ["--stop-cmd", options.stop_cmd, "--start-cmd", options.start_cmd]
    else:
        where += ["--prod"] if options.prod else []
        where += ["--project", options.project] if options.project else []
    if options.backups_dir != DEFAULT_ROOT:
        where += ["--backups-dir", str(options.backups_dir)]

    def again(path: Path) -> str:
        # The state a failed restore left is not worth a safety copy of its own.
        return shlex.join([*program, *where, "--backup", str(path), "--yes", "--no-safety-backup"])

    def start(stopped: list[str]) -> str:
        if options.postgres_container:
            return options.start_cmd or "nothing to start (--no-writers)"
        up = ["./run", "invoke", "up", "--no-build", *(["--prod"] if options.prod else [])]
        return shlex.join(up + (["--project", options.project] if options.project else []))

    return Recovery(again, start)


RESTORE = Command(
    "restore",
    RestoreOptions,
    run_restore,
    """Restore a backup made by `backup`: database, objects and vectors.

Before touching anything it checks every file against the manifest's sha256 (one changed byte:
refused, naming the file), that this code knows the backup's schema revision, and that the
server's pg_restore reads the dump; --dry-run stops there and says what would be replaced
(no lock, nothing stopped, nothing written). It asks (a typed confirmation on a terminal) unless
--yes, holds the backups directory's lock, stops the writers (backend, worker, beat) and the
scheduled backups, and only then takes a safety backup of the current state, printing the
command that puts it back. PostgreSQL is restored in one transaction into a fresh database
beside the live one, which it then replaces (nothing of the old one survives, not even a table
a later migration made); the object store gets the backup's objects, then loses the others;
the migrate step runs; vectors come from the Qdrant snapshot, or are rebuilt from the chunks
table. It ends with a verification table (rows, objects, checksums, vectors) and starts the
writers again. Exit status 0 only when every check passes; on any failure once the writers
stopped they stay stopped, and the error's hint names the command that restores the safety
backup and the one that starts the writers.

--from-offsite first downloads backup NAME from COACH_OFFSITE_URL into --backups-dir/NAME,
decrypting it with COACH_BACKUP_AGE_IDENTITY_FILE when it was encrypted (refused without it),
and checks every file against the manifest; then it restores as above.

examples:
  ./run invoke restore --backup 20250101T030000Z --dry-run   # the preflight only
  ./run invoke restore --backup 20250101T030000Z --yes
  ./run invoke restore --prod --backup 20250101T030000Z     # asks on a terminal
  ./run python scripts/restore.py --backup backups/20250101T030000Z --yes
  ./run invoke restore --prod --backup 20250101T030000Z --from-offsite --dry-run
""",
)

# --- reindex --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReindexOptions(TargetOptions, JsonOption):
    batch: int = opt(256, "chunks per batch", metavar="N")
    fresh: bool = opt(False, "start over instead of resuming an interrupted run")


def run_reindex(options: ReindexOptions, reporter: Reporter) -> None:
    if options.batch < 1:
        raise UsageError(f"--batch must be at least 1, not {options.batch}")
    with closing(options.target()) as target:
        result = reindex(
            target.settings(), batch=options.batch, fresh=options.fresh, reporter=reporter
        )
    reporter.result(
        f"{result.collection}: {result.resumed_from + result.points} points "
        f"({result.points_per_second:.0f} points/s)",
        collection=result.collection,
        previous=result.previous,
        points=result.points,
        resumed_from=result.resumed_from,
        points_per_second=round(result.points_per_second, 1),
    )


REINDEX = Command(
    "reindex",
    ReindexOptions,
    run_reindex,
    """Rebuild the Qdrant vectors from the chunks table; no search ever sees a partial index.

The points go into a new collection; the alias the app searches through then switches to it in
one atomic operation and the old collection is dropped. Progress (points done/total) and
throughput (points/s) are shown as it goes. Interrupted (crash, Ctrl-C, deploy), it resumes:
the next run continues into the same new collection from the last batch written. One run at a
time (a PostgreSQL advisory lock): a second one is refused. The Celery task coach.reindex does
the same inside the stack.

examples:
  ./run invoke reindex                 # the development compose stack
  ./run invoke reindex --fresh         # drop an interrupted run, start over
  ./run python scripts/reindex.py --prod
""",
)

# --- logs-clean -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogsCleanOptions(ChangeOptions, JsonOption):
    log_file: list[str] = opt(
        [], "the live log file (repeatable; default: LOG_FILE from the environment)", metavar="PATH"
    )
    older_than_days: int = opt(
        int(logfiles.DEFAULT_OLDER_THAN_DAYS),
        "delete rotated files older than this",
        metavar="DAYS",
    )
    max_total_mb: int = opt(
        int(logfiles.DEFAULT_MAX_TOTAL_BYTES / 1e6),
        "then keep live + rotated files within this many MB, oldest deleted first",
        metavar="MB",
    )


def run_logs_clean(options: LogsCleanOptions, reporter: Reporter) -> None:
    default = get_settings().log_file
    files = [Path(p) for p in options.log_file] or ([default] if default else [])
    if not files:
        raise UsageError("no log file: LOG_FILE is not set; pass --log-file")
    limits = {
        "older_than_days": options.older_than_days,
        "max_total_bytes": options.max_total_mb * 1_000_000,
    }
    if not options.dry_run and not options.yes:
        plan = clean(files, **limits, dry_run=True, reporter=reporter)  # shows what would go
        going = sum(len(r.deleted) for r in plan)
        if not going:
            return
        options.confirm(
            f"Delete these {going} rotated log file(s), "
            f"{human_size(sum(r.freed_bytes for r in plan))}?"
        )
    clean(files, **limits, dry_run=options.dry_run, reporter=reporter)


LOGS_CLEAN = Command(
    "logs-clean",
    LogsCleanOptions,
    run_logs_clean,
    """Delete rotated application log files: by age, then by a cap on the total size.

Rotated files are LOG_FILE's siblings named after it: app.log.1, app.log.2 ... (size rotation),
app.log.2025-01-31 (daily rotation), app.log-20250131 (logrotate), each possibly .gz. First
those older than --older-than-days go; then, while the live file and the rotated ones left add
up to more than --max-total-mb, the oldest rotated one. The live file is never deleted. It asks
before deleting unless --yes; --dry-run deletes nothing and says what it would free. The beat
job coach.clean_logs runs the same cleanup inside the stack.

examples:
  ./run invoke logs-clean --dry-run                  # LOG_FILE from the environment
  ./run invoke logs-clean --log-file /var/log/coach/backend.log --older-than-days 7 --yes
  ./run python scripts/logclean.py --dry-run
""",
)

COMMANDS = (BACKUP, RESTORE, REINDEX, LOGS_CLEAN)
