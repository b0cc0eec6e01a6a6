"""backup, restore, reindex, logs-clean: the operations commands through Invoke. Each builds
the command line of its script (scripts/*.py, where --help says everything) and runs it in this
process, so both ways behave alike; the exit status carries over.

Log cleanup is `logs-clean`, not `logs.clean`: `logs` is already the root task showing the
stack's logs, and Invoke cannot have a task and a collection of one name."""

from __future__ import annotations

from collections.abc import Callable

from invoke import Context, task
from invoke.exceptions import Exit

from scripts import backup as backup_script
from scripts import logclean as logclean_script
from scripts import reindex as reindex_script
from scripts import restore as restore_script

TARGET_HELP = {
    "prod": "The production compose stack (default: development).",
    "postgres_container": "No compose stack: this postgres container, settings from the env.",
    "json": "JSON lines on stdout, for automation.",
}


def _flags(**options: object) -> list[str]:
    """--name value for each option set (True: a bare flag; False/None/"": left out)."""
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.rstrip("_").replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (None, False, ""):
            argv += [flag, str(value)]
    return argv


def _run(main: Callable[[list[str]], int], argv: list[str]) -> None:
    code = main(argv)
    if code:
        raise Exit(code=code)


@task(
    help={
        **TARGET_HELP,
        "dest": "Backups directory (default ./backups).",
        "keep": "Retention: keep the N newest.",
        "keep_days": "Retention: keep those newer than DAYS.",
        "upload_to": "Also copy to s3://bucket/prefix.",
        "list_": "List the backups and exit.",
    }
)
def backup(  # noqa: PLR0917 - one parameter per CLI flag
    c: Context,
    prod: bool = False,
    postgres_container: str = "",
    dest: str = "",
    keep: int = 0,
    keep_days: str = "",
    upload_to: str = "",
    list_: bool = False,
    json_: bool = False,
) -> None:
    """Back up database, objects and vectors to ./backups (scripts/backup.py)."""
    _run(
        backup_script.main,
        _flags(
            prod=prod,
            postgres_container=postgres_container,
            dest=dest,
            keep=keep or None,
            keep_days=keep_days,
            upload_to=upload_to,
            list=list_,
            json=json_,
        ),
    )


@task(
    help={
        **TARGET_HELP,
        "backup": "The backup directory, or its name under ./backups.",
        "yes": "Restore without asking.",
        "no_safety_backup": "Skip the backup of the current state.",
    }
)
def restore(  # noqa: PLR0917 - one parameter per CLI flag
    c: Context,
    backup: str,
    yes: bool = False,
    prod: bool = False,
    postgres_container: str = "",
    no_safety_backup: bool = False,
    json_: bool = False,
) -> None:
    """Verify, then restore a backup (scripts/restore.py)."""
    _run(
        restore_script.main,
        [
            backup,
            *_flags(
                yes=yes,
                prod=prod,
                postgres_container=postgres_container,
                no_safety_backup=no_safety_backup,
                json=json_,
            ),
        ],
    )


@task(
    help={
        **TARGET_HELP,
        "batch": "Chunks per batch (default 256).",
        "fresh": "Start over instead of resuming an interrupted run.",
    }
)
def reindex(  # noqa: PLR0917 - one parameter per CLI flag
    c: Context,
    prod: bool = False,
    postgres_container: str = "",
    batch: int = 0,
    fresh: bool = False,
    json_: bool = False,
) -> None:
    """Rebuild the vectors, swap the alias atomically (scripts/reindex.py)."""
    _run(
        reindex_script.main,
        _flags(
            prod=prod,
            postgres_container=postgres_container,
            batch=batch or None,
            fresh=fresh,
            json=json_,
        ),
    )


@task(
    iterable=["log_file"],
    help={
        "log_file": "The live log file (repeatable; default LOG_FILE).",
        "older_than_days": "Delete rotated files older than this (default 14).",
        "max_total_mb": "Then cap live + rotated at this many MB (default 500).",
        "dry_run": "Delete nothing; say what would go.",
        "json": "JSON lines on stdout, for automation.",
    },
)
def logs_clean(  # noqa: PLR0917 - one parameter per CLI flag
    c: Context,
    log_file: list[str] | None = None,
    older_than_days: str = "",
    max_total_mb: str = "",
    dry_run: bool = False,
    json_: bool = False,
) -> None:
    """Delete rotated log files by age, then total size (scripts/logclean.py)."""
    argv = [arg for path in log_file or [] for arg in ("--log-file", path)]
    argv += _flags(
        older_than_days=older_than_days,
        max_total_mb=max_total_mb,
        dry_run=dry_run,
        json=json_,
    )
    _run(logclean_script.main, argv)
