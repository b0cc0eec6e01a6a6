"""Scheduled backups: when the next one runs, which backups the daily/weekly retention keeps,
and the metrics a long-lived backup process exports (its last success read back from disk, so
a restart does not reset it).

The schedule is a UTC time of day ("03:00": daily at 03:00 UTC), or an interval in seconds
(tests, or an operator who wants hourly backups); the interval wins when set.

Retention keeps the newest backup of each of the `keep_daily` newest UTC days that have one,
and the newest of each of the `keep_weekly` newest ISO weeks that have one; a backup may be
kept by both rules. Safety copies (`-pre-restore`) are never counted here: they follow their
own rule (ops/data/backup.py, SAFETY_KEEP).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ops.data.backup import SAFETY_KEEP, complete_backups, created_at, is_safety_copy
from ops.data.manifest import MANIFEST
from ops.errors import OpsError

DAILY = re.compile(r"^(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)$")
DEFAULT_SCHEDULE = "03:00"
DEFAULT_KEEP_DAILY = 7
DEFAULT_KEEP_WEEKLY = 4


@dataclass(frozen=True)
class Schedule:
    """Daily at `at` (HH:MM, UTC), or every `interval_s` seconds when that is set."""

    at: str = DEFAULT_SCHEDULE
    interval_s: float | None = None

    def __post_init__(self) -> None:
        if self.interval_s is None and not DAILY.match(self.at):
            raise OpsError(f"BACKUP_SCHEDULE={self.at!r}: expected HH:MM (UTC), e.g. 03:00")
        if self.interval_s is not None and self.interval_s <= 0:
            raise OpsError(f"BACKUP_INTERVAL_SECONDS={self.interval_s}: must be positive")

    def next_run(self, now: datetime, last: datetime | None = None) -> datetime:
        """The next run strictly after `now` (an interval counts from the `last` run; with none
        yet, it runs now)."""
        if self.interval_s is not None:
            if last is None:
                return now
            return max(now, last + timedelta(seconds=self.interval_s))
        match = DAILY.match(self.at)
        assert match is not None
        today = now.astimezone(UTC).replace(
            hour=int(match["hour"]), minute=int(match["minute"]), second=0, microsecond=0
        )
        return today if today > now else today + timedelta(days=1)


def is_labelled(path: Path) -> bool:
    """A backup with a label (`<stamp>-pre-upgrade`, `-pre-restore`, `invoke backup --label`):
    made for a reason of its own, not by the schedule."""
    return path.name != path.name.split("-", 1)[0]


def kept_calendar(backups: Iterable[Path], *, keep_daily: int, keep_weekly: int) -> set[Path]:
    """The unlabelled backups the daily and weekly rules keep."""
    if keep_daily < 1:
        raise OpsError("--keep-daily must be at least 1: the backup just made is always kept")
    if keep_weekly < 0:
        raise OpsError("--keep-weekly must not be negative")
    newest_first = sorted((p for p in backups if not is_labelled(p)), key=created_at, reverse=True)
    kept: set[Path] = set()
    for rule, limit in (
        (lambda p: created_at(p).date(), keep_daily),
        (lambda p: created_at(p).isocalendar()[:2], keep_weekly),
    ):
        seen: set[object] = set()
        for path in newest_first:
            bucket = rule(path)
            if bucket not in seen and len(seen) < limit:
                seen.add(bucket)
                kept.add(path)
    return kept


def expired_calendar(
    backups: list[Path], *, keep_daily: int, keep_weekly: int, now: datetime | None = None
) -> list[Path]:
    """What the schedule's retention deletes, newest first: unlabelled backups neither rule
    keeps, and safety copies beyond the `SAFETY_KEEP` newest once older than `keep_daily`
    days (a restore retried a few times must not push out the copy of the state before the
    first one). Other labelled backups (`pre-upgrade`: the way back to the previous code)
    are never the schedule's to delete: `invoke backup --keep` does, when asked."""
    kept = kept_calendar(backups, keep_daily=keep_daily, keep_weekly=keep_weekly)
    good = [p for p in backups if not is_labelled(p) and p not in kept]
    since = (now or datetime.now(UTC)) - timedelta(days=keep_daily)
    safety = sorted((p for p in backups if is_safety_copy(p)), key=created_at, reverse=True)
    old_safety = [p for p in safety[SAFETY_KEEP:] if created_at(p) < since]
    return sorted(good + old_safety, key=created_at, reverse=True)


def prune(
    root: Path, *, keep_daily: int, keep_weekly: int, removed: Callable[[Path], None]
) -> list[Path]:
    """Apply the daily/weekly retention to the whole backups under `root`."""
    gone = expired_calendar(complete_backups(root), keep_daily=keep_daily, keep_weekly=keep_weekly)
    for path in gone:
        (path / MANIFEST).unlink()  # first: a half-deleted backup no longer looks whole
        shutil.rmtree(path)
        removed(path)
    return gone


def last_success(root: Path) -> datetime | None:
    """When the newest complete non-safety backup under `root` was made (its name's stamp)."""
    good = [p for p in complete_backups(root) if not is_safety_copy(p)]
    return created_at(good[-1]) if good else None


def backup_size(path: Path) -> int:
    """Bytes of every file of a backup directory."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
