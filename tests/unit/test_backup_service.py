"""The backup service's pieces (ops/data/scheduled.py): its settings, the loop's timing after
successes and failures, the metrics (read back from disk on start, absent while unknown), a
failure counted and survived, and the in-stack target running the tools with a passfile."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from ops.console import Reporter
from ops.data import scheduled
from ops.data.backup import BackupResult
from ops.data.manifest import MANIFEST, Manifest
from ops.data.offsite import Destination
from ops.data.schedule import Schedule
from ops.data.scheduled import (
    RETRY_S,
    BackupMetrics,
    next_attempt,
    run_loop,
    schedule_of,
    take,
)
from ops.data.target import InStackTarget
from ops.errors import OpsError, TargetError
from ops.settings import OpsSettings

T0 = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def _backup(root: Path, when: datetime, label: str = "", size: int = 10) -> Path:
    path = root / (when.strftime("%Y%m%dT%H%M%SZ") + (f"-{label}" if label else ""))
    path.mkdir(parents=True)
    (path / MANIFEST).write_text("{}")
    (path / "postgres.dump").write_bytes(b"x" * size)
    return path


def _exposition(metrics: BackupMetrics) -> str:
    registry = CollectorRegistry()
    registry.register(metrics)
    return generate_latest(registry).decode()


def _samples(metrics: BackupMetrics) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(_exposition(metrics))
        for sample in family.samples
    }


def test_settings_default_to_daily_at_three_keeping_seven_days_and_four_weeks() -> None:
    settings = OpsSettings()
    assert schedule_of(settings) == Schedule("03:00", None)
    assert (settings.backup_keep_daily, settings.backup_keep_weekly) == (7, 4)


def test_an_interval_setting_wins_and_empty_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COACH_BACKUP_INTERVAL_SECONDS", "20")
    assert schedule_of(OpsSettings()).interval_s == 20
    monkeypatch.setenv("COACH_BACKUP_INTERVAL_SECONDS", "")  # compose's ${VAR:-}
    assert schedule_of(OpsSettings()).interval_s is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COACH_BACKUP_SCHEDULE", "3am"),
        ("COACH_BACKUP_SCHEDULE", "24:00"),
        ("COACH_BACKUP_INTERVAL_SECONDS", "0"),
        ("COACH_BACKUP_INTERVAL_SECONDS", "soon"),
        ("COACH_BACKUP_KEEP_DAILY", "0"),
        ("COACH_BACKUP_KEEP_WEEKLY", "-1"),
    ],
)
def test_a_bad_setting_stops_the_service_at_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        OpsSettings()
    assert scheduled.main({}) == 2
    err = capsys.readouterr().err
    assert "bad settings" in err and variable.removeprefix("COACH_").lower() in err


def test_after_a_failure_an_interval_retries_later_not_at_once() -> None:
    every = Schedule(interval_s=20)
    last = T0 - timedelta(hours=1)  # overdue: the schedule alone would say "now"
    assert next_attempt(every, T0, last, failed=False) == T0
    assert next_attempt(every, T0, last, failed=True) == T0 + timedelta(seconds=20)


def test_daily_a_failed_or_missed_day_is_owed_and_a_new_installation_waits() -> None:
    daily = Schedule("03:00")
    slot = daily.next_run(T0) - timedelta(days=1)  # the latest 03:00 at or before T0
    retry = T0 + timedelta(seconds=RETRY_S)
    assert next_attempt(daily, T0, None, failed=False) == daily.next_run(T0)  # the first slot
    assert next_attempt(daily, T0, None, failed=True) == retry  # the first one failed
    assert next_attempt(daily, T0, slot - timedelta(days=1), failed=True) == retry
    # Down over the slot (an upgrade, a reboot): today's runs at once when it comes back.
    assert next_attempt(daily, T0, slot - timedelta(days=1), failed=False) == T0
    assert next_attempt(daily, T0, slot, failed=False) == daily.next_run(T0)


class _Clock:
    """Time that moves only when the loop waits (the stop event's wait is replaced)."""

    def __init__(self) -> None:
        self.now = T0
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return self.now


class _Stop(threading.Event):
    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.waits.append(timeout or 0.0)
        self.clock.now += timedelta(seconds=timeout or 0.0)
        return self.is_set()


def test_the_loop_runs_at_once_then_on_the_interval_and_backs_off_after_a_failure() -> None:
    clock = _Clock()
    outcomes = iter([True, False, True, True])
    attempts: list[datetime] = []

    def take_one() -> BackupResult | None:
        attempts.append(clock.now)
        clock.now += timedelta(seconds=2)  # the backup itself takes time
        return _result() if next(outcomes) else None

    metrics = BackupMetrics()
    done = run_loop(take_one, Schedule(interval_s=20), metrics, _Stop(clock), clock=clock, runs=4)
    assert done == 4
    offsets = [(t - T0).total_seconds() for t in attempts]
    # at once; 20 s after the first start; a failure: 20 s later (not at once); then on time.
    assert offsets == [0, 20, 42, 62]
    assert metrics.next_run == (T0 + timedelta(seconds=62)).timestamp()  # the last one's


def test_the_loop_stops_when_asked_while_waiting() -> None:
    stop = threading.Event()
    stop.set()
    calls: list[int] = []

    def take_one() -> BackupResult | None:
        calls.append(1)
        return None

    assert run_loop(take_one, Schedule("03:00"), BackupMetrics(), stop) == 0
    assert not calls


def _result(path: Path | None = None, size: int = 1234, seconds: float = 1.5) -> BackupResult:
    manifest = Manifest.__new__(Manifest)
    return BackupResult(path or Path("/b/20260304T120000Z"), manifest, seconds, size)


def test_metrics_are_absent_until_known_and_read_back_from_disk(tmp_path: Path) -> None:
    fresh = _samples(BackupMetrics())
    assert "coach_backup_last_success_timestamp_seconds" not in fresh  # BackupTooOld: absent
    assert fresh["coach_backup_failures_total"] == 0
    _backup(tmp_path, T0 - timedelta(days=1), size=5)
    newest = _backup(tmp_path, T0, size=7)
    _backup(tmp_path, T0 + timedelta(hours=1), "pre-restore", size=99)  # not a scheduled one
    (tmp_path / (T0 + timedelta(hours=2)).strftime("%Y%m%dT%H%M%SZ.partial")).mkdir()
    metrics = BackupMetrics()
    metrics.read_back(tmp_path)
    assert metrics.last_success == T0.timestamp()
    assert metrics.last_size == sum(f.stat().st_size for f in newest.iterdir())
    assert _samples(metrics)["coach_backup_last_success_timestamp_seconds"] == T0.timestamp()


def test_a_success_sets_the_metrics_from_the_backup_name(tmp_path: Path) -> None:
    metrics = BackupMetrics()
    metrics.succeeded(_result(tmp_path / T0.strftime("%Y%m%dT%H%M%SZ"), size=4321, seconds=2.5))
    assert (metrics.last_success, metrics.last_size, metrics.last_duration) == (
        T0.timestamp(),
        4321,
        2.5,
    )


@pytest.fixture
def in_stack(tmp_path: Path) -> Iterator[InStackTarget]:
    secret = tmp_path / "pw"
    secret.write_text("p:w\\d\n")
    env = {
        "POSTGRES_HOST": "postgres",
        "POSTGRES_USER": "coach",
        "POSTGRES_DB": "coach",
        "POSTGRES_PASSWORD_FILE": str(secret),
        "DATA_DIR": str(tmp_path / "data"),  # local stores: no QDRANT_URL, no S3_ENDPOINT_URL
    }
    target = InStackTarget(env, tmp_path / "scratch")
    yield target
    target.close()


def test_take_backs_up_prunes_with_the_calendar_rule_and_counts_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_stack: InStackTarget
) -> None:
    old = [_backup(tmp_path, T0 - timedelta(days=d)) for d in range(1, 4)]
    calls: list[Path] = []

    def fake_backup(target: object, root: Path, **_: object) -> BackupResult:
        calls.append(root)
        return _result(_backup(root, T0), size=10)

    monkeypatch.setattr(scheduled, "backup", fake_backup)
    settings = OpsSettings(backup_keep_daily=2, backup_keep_weekly=0)
    metrics = BackupMetrics()
    target = in_stack
    assert take(target, tmp_path, settings, metrics, Reporter(json_lines=True)) is not None
    assert calls == [tmp_path]
    left = sorted(p.name for p in tmp_path.iterdir() if (p / MANIFEST).exists())
    assert left == sorted([T0.strftime("%Y%m%dT%H%M%SZ"), old[0].name])  # two newest days

    def failing(*_: object, **__: object) -> BackupResult:
        raise OpsError("postgres: connection refused")

    monkeypatch.setattr(scheduled, "backup", failing)
    before = metrics.last_success
    assert take(target, tmp_path, settings, metrics, Reporter(json_lines=True)) is None
    assert metrics.failures == 1 and metrics.last_success == before
    assert _samples(metrics)["coach_backup_failures_total"] == 1


def test_an_off_site_outage_costs_the_local_backup_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_stack: InStackTarget
) -> None:
    """The local backup counts and retention runs; the failed copy is counted and logged, so
    the next attempt is the schedule's, not a whole new local backup every few minutes."""
    old = [_backup(tmp_path, T0 - timedelta(days=d)) for d in range(1, 4)]
    monkeypatch.setattr(
        scheduled, "backup", lambda _t, root, **_: _result(_backup(root, T0), size=10)
    )

    def unreachable(path: Path, *_: object) -> str:
        raise OpsError(f"s3://offsite/{path.name}: connection refused")

    monkeypatch.setattr(scheduled, "copy_offsite", unreachable)
    settings = OpsSettings(backup_keep_daily=2, backup_keep_weekly=0)
    metrics = BackupMetrics()
    destination = cast(Destination, object())
    made = take(
        in_stack, tmp_path, settings, metrics, Reporter(json_lines=True), offsite_to=destination
    )
    assert made is not None and metrics.last_success == T0.timestamp()
    assert metrics.failures == 1
    left = sorted(p.name for p in tmp_path.iterdir() if (p / MANIFEST).exists())
    assert left == sorted([T0.strftime("%Y%m%dT%H%M%SZ"), old[0].name])


def test_the_in_stack_target_runs_the_tools_here_with_a_private_passfile(
    in_stack: InStackTarget,
) -> None:
    argv = in_stack.pg_argv("pg_dump", "-Fc", "-U", "coach")
    assert argv[0] == "env" and argv[-4:] == ["pg_dump", "-Fc", "-U", "coach"]
    variables = dict(a.split("=", 1) for a in argv[1:-4])
    assert (variables["PGHOST"], variables["PGPORT"]) == ("postgres", "5432")
    assert not any("p:w" in a or "p\\:w" in a for a in argv), "no password in argv"
    passfile = Path(variables["PGPASSFILE"])
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert passfile.read_text() == "postgres:5432:*:coach:p\\:w\\\\d\n"  # libpq's escapes
    assert (in_stack.db_user, in_stack.db_name) == ("coach", "coach")
    in_stack.close()
    assert not passfile.exists()


def test_the_in_stack_target_cannot_stop_writers_nor_reach_a_container(
    in_stack: InStackTarget,
) -> None:
    assert not in_stack.can_stop_writers
    with pytest.raises(TargetError):
        in_stack.stop_writers()
    with pytest.raises(TargetError):
        in_stack.postgres_container()


def test_what_reading_local_stores_created_goes_to_the_volume_owner(
    in_stack: InStackTarget, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "objects").mkdir(parents=True)
    (data / "qdrant.lock").touch()  # made here, by root: the app's user could not open it
    os.chown(data, 10001, 10001)
    in_stack.after_writes()
    assert {(p.stat().st_uid, p.stat().st_gid) for p in data.rglob("*")} == {(10001, 10001)}


def test_the_in_stack_target_needs_a_database_host(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="POSTGRES_HOST"):
        InStackTarget({}, tmp_path).pg_argv("psql")
