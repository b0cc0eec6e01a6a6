"""CHANGELOG.md records every release's commit, and that commit is in the history: a clone
without tags still finds the previous release."""

from __future__ import annotations

import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from ops import releases
from ops.errors import ConfigError
from ops.paths import ROOT


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    assert git is not None
    return subprocess.run(
        [git, "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )


def _history_or_skip() -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the recorded commits cannot be looked up")
    if _git("rev-parse", "--verify", "HEAD").returncode != 0:
        pytest.skip("this checkout has no git history (an export or a copy without .git)")
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("a shallow clone: older release commits may be missing from its history")


def test_the_changelog_records_the_first_release_and_no_unreleased_commit() -> None:
    recorded = releases.releases()
    assert [r.version for r in recorded][-1] == "0.1.0", "the oldest release is 0.1.0"
    first = recorded[-1]
    assert first.commit.startswith("46180b3") and len(first.commit) == 40
    assert "Unreleased" not in releases.commits()
    assert releases.commits()["0.1.0"] == first.commit


def test_every_recorded_commit_is_in_the_history_on_its_date() -> None:
    _history_or_skip()
    for release in releases.releases():
        full = _git("rev-parse", "--verify", f"{release.commit}^{{commit}}")
        assert full.returncode == 0, f"{release.version}: no commit {release.commit}"
        ancestor = _git("merge-base", "--is-ancestor", full.stdout.strip(), "HEAD")
        assert ancestor.returncode == 0, f"{release.version}: {release.commit} is not in HEAD"
        committed = _git("show", "-s", "--format=%cs", release.commit).stdout.strip()
        assert date.fromisoformat(committed) == release.date, release.version


CHANGELOG = """# Changelog

## [Unreleased]

- work in progress

## [0.2.0] - 2026-12-24

commit: 0123456789abcdef0123456789abcdef01234567

### Added

- things

## [0.1.0] - 2026-11-26

commit: 46180b3
"""


def test_a_changelog_parses_to_each_release_and_its_commit(tmp_path: Path) -> None:
    path = tmp_path / "CHANGELOG.md"
    path.write_text(CHANGELOG)
    assert releases.commits(path) == {
        "0.2.0": "0123456789abcdef0123456789abcdef01234567",
        "0.1.0": "46180b3",
    }
    assert releases.releases(path)[0].date == date(2026, 12, 24)


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        (CHANGELOG.replace("commit: 46180b3\n", ""), r":15: release 0\.1\.0 records no `commit:`"),
        (
            CHANGELOG.replace("commit: 0123456789abcdef0123456789abcdef01234567\n", ""),
            r":7: release 0\.2\.0 records no `commit:`",
        ),
        (CHANGELOG.replace("commit: 46180b3", "commit: HEAD"), r"'HEAD' is not a commit sha"),
        (CHANGELOG.replace("[0.1.0] - 2026-11-26", "[0.1.0]"), r"release 0\.1\.0 has no date"),
        (CHANGELOG.replace("[0.1.0]", "[0.2.0]"), r"release 0\.2\.0 appears twice"),
    ],
    ids=["last-without-commit", "commit-missing-before-next", "not-a-sha", "no-date", "twice"],
)
def test_a_malformed_changelog_is_refused_naming_the_line(
    tmp_path: Path, broken: str, problem: str
) -> None:
    path = tmp_path / "CHANGELOG.md"
    path.write_text(broken)
    with pytest.raises(ConfigError, match=problem):
        releases.commits(path)


def test_a_missing_changelog_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CHANGELOG\.md: no such file"):
        releases.commits(tmp_path / "CHANGELOG.md")
