"""Log cleanup for an operator: coach.logfiles.clean over one or more live log files, each
deletion reported, and what was (or, with dry_run, would be) freed."""

from __future__ import annotations

from pathlib import Path

from coach import logfiles
from coach.logfiles import Cleanup
from ops.console import Reporter, human_size


def clean(
    live_files: list[Path],
    *,
    older_than_days: float | None = logfiles.DEFAULT_OLDER_THAN_DAYS,
    max_total_bytes: int | None = logfiles.DEFAULT_MAX_TOTAL_BYTES,
    dry_run: bool = False,
    reporter: Reporter | None = None,
) -> list[Cleanup]:
    reporter = reporter or Reporter()
    verb = "would delete" if dry_run else "deleted"
    results = []
    for live in live_files:
        result = logfiles.clean(
            live,
            older_than_days=older_than_days,
            max_total_bytes=max_total_bytes,
            dry_run=dry_run,
        )
        for file, why in result.deleted:
            reporter.event(
                "delete",
                f"{verb} {file.path} ({human_size(file.size)}, {why})",
                path=str(file.path),
                bytes=file.size,
                reason=why,
                dry_run=dry_run,
            )
        results.append(result)
    freed = sum(r.freed_bytes for r in results)
    files = sum(len(r.deleted) for r in results)
    remaining = sum(r.remaining_bytes for r in results)
    reporter.result(
        f"{'would free' if dry_run else 'freed'} {human_size(freed)} in {files} files; "
        f"{human_size(remaining)} of logs remain",
        dry_run=dry_run,
        files=files,
        freed_bytes=freed,
        remaining_bytes=remaining,
    )
    return results
