"""The backup service (`python -m ops.data.scheduled`, service `backup` of the production
stack): a long-lived loop that waits for the schedule (ops/data/schedule.py), takes a backup
with the same code as `invoke backup` (from inside the stack: InStackTarget), applies the
daily/weekly retention, copies it off-site when COACH_BACKUP_OFFSITE says so, and serves
Prometheus metrics of it all.

The backups directory is the host's (a bind mount), so the host's `invoke backup --list`,
`restore --backup NAME` and its lock see the same files. The metrics start from what that
directory holds, so a restart does not make the last success look older than it is.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import ValidationError

from ops.console import Reporter
from ops.data.backup import (
    DEFAULT_ROOT,
    BackupResult,
    backup,
    complete_backups,
    copy_offsite,
    created_at,
    is_safety_copy,
    locked,
)
from ops.data.offsite import Destination
from ops.data.schedule import Schedule, backup_size, last_success, prune
from ops.data.target import InStackTarget, Target
from ops.errors import OpsError
from ops.settings import OpsSettings

RETRY_S = 300.0  # after a failure, the next attempt (sooner when the interval is shorter)
SCRATCH = Path("/tmp/coach-backup")  # noqa: S108 - the container's private tmpfs


@dataclass(eq=False)  # hashable: the registry keys its collectors by identity
class BackupMetrics(Collector):
    """What Prometheus scrapes. A value nobody knows yet is not exported at all (rather than 0):
    BackupTooOld tells "never succeeded" from "long ago" by the timestamp's absence."""

    last_success: float | None = None  # unix seconds
    last_size: int | None = None
    last_duration: float | None = None
    next_run: float | None = None
    failures: int = 0

    def collect(self) -> Iterator[Metric]:
        gauges = (
            ("coach_backup_last_success_timestamp_seconds", "When the newest complete "
             "scheduled backup was made (Unix time).", self.last_success),
            ("coach_backup_last_size_bytes", "Bytes of the newest complete backup.",
             self.last_size),
            ("coach_backup_last_duration_seconds", "How long the last successful backup took.",
             self.last_duration),
            ("coach_backup_next_run_timestamp_seconds", "When the next backup is due (Unix "
             "time).", self.next_run),
        )  # fmt: skip
        for name, doc, value in gauges:
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)
        yield CounterMetricFamily(
            "coach_backup_failures", "Scheduled backups that failed.", value=self.failures
        )

    def read_back(self, root: Path) -> None:
        """The last success and its size from the directory (a restart keeps them)."""
        if (when := last_success(root)) is not None:
            self.last_success = when.timestamp()
            good = [p for p in complete_backups(root) if not is_safety_copy(p)]
            self.last_size = backup_size(good[-1])

    def succeeded(self, result: BackupResult) -> None:
        self.last_success = created_at(result.path).timestamp()  # as read back after a restart
        self.last_size = result.size
        self.last_duration = result.seconds


def schedule_of(settings: OpsSettings) -> Schedule:
    return Schedule(at=settings.backup_schedule, interval_s=settings.backup_interval_seconds)


def offsite_of(settings: OpsSettings) -> Destination | None:
    """Where every backup is copied, when COACH_BACKUP_OFFSITE is on (checked at start: a
    wrong destination fails the service at once, not the first backup hours later)."""
    return Destination.from_settings(settings) if settings.backup_offsite else None


def take(
    target: Target,
    root: Path,
    settings: OpsSettings,
    metrics: BackupMetrics,
    reporter: Reporter,
    *,
    offsite_to: Destination | None = None,
) -> BackupResult | None:
    """One scheduled backup, then the retention; a failure is counted and logged, never
    raised (the loop goes on: the next attempt may succeed, and the alert tells the rest)."""
    try:
        try:
            result = backup(target, root, reporter=reporter)
        finally:
            target.after_writes()
        metrics.succeeded(result)
        with locked(root):
            prune(
                root,
                keep_daily=settings.backup_keep_daily,
                keep_weekly=settings.backup_keep_weekly,
                removed=lambda p: reporter.event(
                    "removed", f"retention: removed {p.name}", path=str(p)
                ),
            )
    except Exception as exc:  # every failure is the same to a schedule
        metrics.failures += 1
        reporter.event("failed", f"scheduled backup failed: {exc}", error=str(exc))
        return None
    if offsite_to is not None:
        # After the local backup counts and retention ran: an off-site outage must neither
        # make the next attempt a whole new local backup (filling the disk) nor stop pruning.
        try:
            copy_offsite(result.path, offsite_to, reporter)
        except Exception as exc:
            metrics.failures += 1
            reporter.event(
                "failed",
                f"off-site copy of {result.path.name} failed: {exc}",
                error=str(exc),
                path=str(result.path),
            )
    return result


def next_attempt(
    schedule: Schedule, now: datetime, last: datetime | None, *, failed: bool
) -> datetime:
    """The schedule's next run. After a failure no sooner than a retry delay (an interval
    would otherwise count from the last success and retry at once, in a tight loop); daily,
    a failed or missed day is owed: tried again every RETRY_S until it succeeds, and a slot
    that passed while the service was down (an upgrade, a reboot) runs at once. A new
    installation (no backup yet) waits for its first slot."""
    if schedule.interval_s is None:
        slot = schedule.next_run(now) - timedelta(days=1)  # the latest slot at or before now
        owed = last is None or last < slot
        if failed and owed:
            return now + timedelta(seconds=RETRY_S)
        if last is not None and owed:
            return now
        return schedule.next_run(now, last)
    due = schedule.next_run(now, last)
    if failed:
        due = max(due, now + timedelta(seconds=min(RETRY_S, schedule.interval_s)))
    return due


def run_loop(
    take_one: Callable[[], BackupResult | None],
    schedule: Schedule,
    metrics: BackupMetrics,
    stop: threading.Event,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    runs: int | None = None,
) -> int:
    """Wait for each due time and take a backup, until `stop` is set (or `runs` attempts,
    for tests). Returns the number of attempts."""
    last = datetime.fromtimestamp(metrics.last_success, UTC) if metrics.last_success else None
    failed, attempts = False, 0
    while not stop.is_set() and (runs is None or attempts < runs):
        due = next_attempt(schedule, clock(), last, failed=failed)
        metrics.next_run = due.timestamp()
        if stop.wait(max(0.0, (due - clock()).total_seconds())):
            break
        attempts += 1
        started = clock()
        failed = take_one() is None
        if not failed:
            last = started
    return attempts


def main(environ: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    reporter = Reporter(json_lines=True)
    try:
        settings = OpsSettings()
        schedule = schedule_of(settings)
        offsite_to = offsite_of(settings)
    except (ValidationError, OpsError) as exc:
        print(f"backup service: bad settings: {exc}", file=sys.stderr, flush=True)
        return 2
    root = settings.backup_dir or DEFAULT_ROOT
    target = InStackTarget(env, SCRATCH)
    metrics = BackupMetrics()
    metrics.read_back(root)
    registry = CollectorRegistry()
    registry.register(metrics)
    start_http_server(settings.backup_metrics_port, registry=registry)
    stop = threading.Event()

    def stopping(signum: int, _frame: FrameType | None) -> None:
        reporter.event("stopping", f"signal {signum}: stopping")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopping)
    reporter.event(
        "started",
        f"backing up {target.name} into {root}: "
        + (
            f"every {schedule.interval_s:g}s"
            if schedule.interval_s
            else f"daily at {schedule.at} UTC"
        )
        + f", keeping {settings.backup_keep_daily} daily and {settings.backup_keep_weekly} "
        + "weekly"
        + (f", off-site to {offsite_to.where('<name>')}" if offsite_to else ""),
        metrics_port=settings.backup_metrics_port,
    )
    try:
        run_loop(
            lambda: take(target, root, settings, metrics, reporter, offsite_to=offsite_to),
            schedule,
            metrics,
            stop,
        )
    finally:
        target.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
