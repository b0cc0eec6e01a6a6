"""Scheduled backups: the next run, the daily/weekly retention (safety copies apart) and the
last success read back from the backups on disk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ops.data.manifest import MANIFEST
from ops.data.schedule import Schedule, expired_calendar, last_success, prune
from ops.errors import OpsError

T0 = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday


def _backup(root: Path, when: datetime, label: str = "") -> Path:
    path = root / (when.strftime("%Y%m%dT%H%M%SZ") + (f"-{label}" if label else ""))
    path.mkdir(parents=True)
    (path / MANIFEST).write_text("{}")
    return path


def test_daily_schedule_runs_today_if_still_ahead_else_tomorrow() -> None:
    daily = Schedule("03:00")
    assert daily.next_run(T0.replace(hour=2)) == T0.replace(hour=3)
    assert daily.next_run(T0) == T0.replace(hour=3) + timedelta(days=1)
    assert daily.next_run(T0.replace(hour=3)) == T0.replace(hour=3) + timedelta(days=1)


def test_interval_runs_at_once_then_every_interval() -> None:
    every = Schedule(interval_s=20)
    assert every.next_run(T0) == T0
    assert every.next_run(T0, last=T0) == T0 + timedelta(seconds=20)
    assert every.next_run(T0 + timedelta(minutes=5), last=T0) == T0 + timedelta(minutes=5)


@pytest.mark.parametrize("at", ["3:00", "24:00", "03:60", "daily"])
def test_a_bad_schedule_is_refused(at: str) -> None:
    with pytest.raises(OpsError, match="HH:MM"):
        Schedule(at)


def test_retention_keeps_newest_of_each_day_and_week_and_labelled_backups_apart(
    tmp_path: Path,
) -> None:
    days = [_backup(tmp_path, T0 - timedelta(days=d)) for d in range(30)]
    second_today = _backup(tmp_path, T0 - timedelta(hours=1))
    safety = [_backup(tmp_path, T0 - timedelta(days=d, hours=2), "pre-restore") for d in range(5)]
    # The way back to the previous code: the newest of its day, yet it takes no day's place.
    upgrade = _backup(tmp_path, T0 - timedelta(days=20, minutes=-1), "pre-upgrade")
    backups = sorted(tmp_path.iterdir())
    gone = set(expired_calendar(backups, keep_daily=3, keep_weekly=2, now=T0))
    kept = set(backups) - gone
    # three newest days, and the newest of last week (Sunday, 2026-03-01; this week's is today).
    assert kept - set(safety) - {upgrade} == {days[0], days[1], days[2], days[3]}
    assert second_today in gone and upgrade in kept
    # Safety copies: the SAFETY_KEEP newest, and any younger than keep_daily days (a restore
    # retried twice keeps the copy from before the first one).
    assert kept & set(safety) == set(safety[:3])


def test_prune_removes_expired_and_last_success_ignores_safety_copies(tmp_path: Path) -> None:
    old = _backup(tmp_path, T0 - timedelta(days=2))
    new = _backup(tmp_path, T0 - timedelta(days=1))
    _backup(tmp_path, T0, "pre-restore")
    removed: list[Path] = []
    assert prune(tmp_path, keep_daily=1, keep_weekly=0, removed=removed.append) == [old]
    assert removed == [old] and not old.exists() and new.exists()
    assert last_success(tmp_path) == T0 - timedelta(days=1)
    assert last_success(tmp_path / "none") is None


def test_keep_daily_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="keep-daily"):
        prune(tmp_path, keep_daily=0, keep_weekly=4, removed=lambda _p: None)
