"""Log cleanup: rotated files chosen by age, then by the total size cap, oldest first; the live
file and anything not named after it are never touched; a dry run deletes nothing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from coach import logfiles
from ops.console import Reporter
from ops.data.logclean import clean
from scripts import logclean as logclean_script

DAY = 86400.0
NOW = time.time()
KB = 1000


def make(path: Path, size: int, age_days: float) -> Path:
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age_days * DAY, NOW - age_days * DAY))
    return path


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """app.log (live, 30 days untouched, 50 kB) and its rotated siblings, plus bystanders."""
    make(tmp_path / "app.log", 50 * KB, 30)  # old mtime: the live file must still stay
    make(tmp_path / "app.log.1", 40 * KB, 1)
    make(tmp_path / "app.log.2", 40 * KB, 3)
    make(tmp_path / "app.log.3.gz", 10 * KB, 8)
    make(tmp_path / "app.log.2024-05-01", 30 * KB, 20)
    make(tmp_path / "app.log-20240401.gz", 20 * KB, 40)
    # Not ours: other names, a directory and a symlink that merely look rotated.
    make(tmp_path / "other.log.1", 10 * KB, 90)
    make(tmp_path / "app.log.bak", 10 * KB, 90)
    make(tmp_path / "archive.gz", 10 * KB, 90)
    (tmp_path / "app.log.9").mkdir()
    (tmp_path / "app.log.8").symlink_to(tmp_path / "other.log.1")
    return tmp_path / "app.log"


def names(paths: list[Path]) -> set[str]:
    return {p.name for p in paths}


def test_rotated_siblings_are_found_oldest_first(logs: Path) -> None:
    found = [f.path.name for f in logfiles.rotated(logs)]
    assert found == [
        "app.log-20240401.gz",
        "app.log.2024-05-01",
        "app.log.3.gz",
        "app.log.2",
        "app.log.1",
    ]


def test_age_then_size_cap_delete_exactly_the_oldest(logs: Path) -> None:
    result = logfiles.clean(logs, older_than_days=14, max_total_bytes=120 * KB, now=NOW)
    # Age: the two older than 14 days. Size: live 50 + rotated 90 = 140 kB > 120 kB, so the
    # oldest remaining (app.log.3.gz, 10 kB) goes, then app.log.2 (40 kB): 90 kB <= 120 kB.
    deleted = [(f.path.name, why.split()[0]) for f, why in result.deleted]
    assert deleted == [
        ("app.log-20240401.gz", "older"),
        ("app.log.2024-05-01", "older"),
        ("app.log.3.gz", "over"),
        ("app.log.2", "over"),
    ]
    assert result.freed_bytes == 100 * KB and result.remaining_bytes == 90 * KB
    left = {p.name for p in logs.parent.iterdir()}
    assert left == {
        "app.log",
        "app.log.1",
        "other.log.1",
        "app.log.bak",
        "archive.gz",
        "app.log.9",
        "app.log.8",
    }


def test_the_live_file_stays_even_alone_over_the_cap(logs: Path) -> None:
    result = logfiles.clean(logs, older_than_days=None, max_total_bytes=1, now=NOW)
    assert names([f.path for f, _ in result.deleted]) == {
        "app.log.1",
        "app.log.2",
        "app.log.3.gz",
        "app.log.2024-05-01",
        "app.log-20240401.gz",
    }
    assert logs.is_file() and result.remaining_bytes == 50 * KB


def test_no_rule_no_deletion(logs: Path) -> None:
    result = logfiles.clean(logs, older_than_days=None, max_total_bytes=None, now=NOW)
    assert result.deleted == [] and len(result.kept) == 5


def test_dry_run_deletes_nothing_and_says_what_it_would_free(
    logs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in logs.parent.iterdir())
    [result] = clean(
        [logs],
        older_than_days=14,
        max_total_bytes=120 * KB,
        dry_run=True,
        reporter=Reporter(json_lines=True),
    )
    assert sorted(p.name for p in logs.parent.iterdir()) == before
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    deletes = [e for e in events if e["event"] == "delete"]
    assert len(deletes) == 4 and all(e["dry_run"] for e in deletes)
    assert events[-1]["event"] == "result" and events[-1]["freed_bytes"] == 100 * KB
    assert result.freed_bytes == 100 * KB


def test_the_command_line_cleans_and_reports(
    logs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--log-file", str(logs), "--older-than-days", "5", "--max-total-mb", "1"]
    assert logclean_script.main([*argv, "--dry-run"]) == 0
    assert "would free 60.0 kB in 3 files" in capsys.readouterr().out
    assert len(logfiles.rotated(logs)) == 5
    assert logclean_script.main(argv) == 1, "no terminal and no --yes: refused"
    assert "pass --yes" in capsys.readouterr().err
    assert len(logfiles.rotated(logs)) == 5
    argv.append("--yes")
    assert logclean_script.main(argv) == 0
    assert "freed 60.0 kB in 3 files" in capsys.readouterr().out
    assert [f.path.name for f in logfiles.rotated(logs)] == ["app.log.2", "app.log.1"]
    assert logclean_script.main(argv) == 0, "idempotent: a second run finds nothing to do"
    assert "freed 0 B in 0 files" in capsys.readouterr().out


def test_the_command_line_needs_a_log_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from coach.settings import get_settings  # noqa: PLC0415

    monkeypatch.delenv("LOG_FILE", raising=False)
    get_settings.cache_clear()
    try:
        assert logclean_script.main(["--dry-run"]) == 1
    finally:
        get_settings.cache_clear()
    assert "LOG_FILE is not set" in capsys.readouterr().err
