"""Rotated application log files (LOG_FILE's siblings): which exist, and which to delete — by
age, then by a cap on the total size, oldest first. The live file is never deleted.

In coach/ rather than ops/ because the worker image runs it too (a beat job); the operator's
command is ops/logclean.py.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_OLDER_THAN_DAYS = 14.0
DEFAULT_MAX_TOTAL_BYTES = 500 * 1000 * 1000
# What rotation leaves beside app.log: app.log.1 (RotatingFileHandler), app.log.2024-05-01 and
# app.log.2024-05-01_13 (TimedRotatingFileHandler), app.log-20240501 (logrotate dateext); each
# possibly compressed (.gz). Only siblings named after the live file: nothing else is ours.
_SUFFIX = r"(?:\.\d+|\.\d{4}-\d{2}-\d{2}(?:_\d{2}(?:-\d{2}){0,2})?|-\d{8}(?:\d{2})?)(?:\.gz)?"


@dataclass(frozen=True)
class LogFile:
    path: Path
    size: int
    mtime: float


@dataclass
class Cleanup:
    live: Path
    dry_run: bool
    deleted: list[tuple[LogFile, str]] = field(default_factory=list)  # (file, why)
    kept: list[LogFile] = field(default_factory=list)
    live_size: int = 0

    @property
    def freed_bytes(self) -> int:
        return sum(f.size for f, _ in self.deleted)

    @property
    def remaining_bytes(self) -> int:
        return self.live_size + sum(f.size for f in self.kept)


def rotated(live: Path) -> list[LogFile]:
    """The rotated siblings of `live`, oldest first; regular files only (no symlinks)."""
    pattern = re.compile(re.escape(live.name) + _SUFFIX)
    if not live.parent.is_dir():
        return []
    found = []
    for path in live.parent.iterdir():
        if not pattern.fullmatch(path.name) or path.is_symlink() or not path.is_file():
            continue
        stat = path.stat()
        found.append(LogFile(path, stat.st_size, stat.st_mtime))
    return sorted(found, key=lambda f: (f.mtime, f.path.name))


def clean(
    live: Path,
    *,
    older_than_days: float | None = DEFAULT_OLDER_THAN_DAYS,
    max_total_bytes: int | None = DEFAULT_MAX_TOTAL_BYTES,
    dry_run: bool = False,
    now: float | None = None,
) -> Cleanup:
    """Delete rotated files older than `older_than_days`; then, while the live file and the
    remaining rotated ones exceed `max_total_bytes`, the oldest rotated one. None disables a
    rule. `dry_run` decides the same and deletes nothing."""
    now = time.time() if now is None else now
    live_size = live.stat().st_size if live.is_file() else 0
    result = Cleanup(live, dry_run, live_size=live_size)
    keep = rotated(live)
    if older_than_days is not None:
        cutoff = now - older_than_days * 86400
        result.deleted += [
            (f, f"older than {older_than_days:g} days") for f in keep if f.mtime < cutoff
        ]
        keep = [f for f in keep if f.mtime >= cutoff]
    if max_total_bytes is not None:
        total = live_size + sum(f.size for f in keep)
        while keep and total > max_total_bytes:
            oldest = keep.pop(0)
            total -= oldest.size
            result.deleted.append((oldest, f"over the {max_total_bytes / 1e6:g} MB cap"))
    result.kept = keep
    if not dry_run:
        for file, _ in result.deleted:
            file.path.unlink(missing_ok=True)
    return result
