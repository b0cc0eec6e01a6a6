"""Releases as CHANGELOG.md records them: each version and the commit it was cut from.

A fresh clone may carry no tags, so the changelog is where an upgrade or rollback drill finds
the previous release. A release is a `## [VERSION] - YYYY-MM-DD` heading followed by a
`commit: SHA` line; `## [Unreleased]` has none and is not a release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ops.errors import ConfigError
from ops.paths import CHANGELOG

HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\S+))?\s*$")
COMMIT = re.compile(r"^commit: (?P<sha>\S+)\s*$")
SHA = re.compile(r"[0-9a-f]{7,40}")
UNRELEASED = "Unreleased"


@dataclass(frozen=True)
class Release:
    version: str
    date: date
    commit: str  # as recorded: a full or abbreviated sha


def parse(text: str, *, source: str = "CHANGELOG.md") -> list[Release]:
    """The releases in `text`, newest first (the file's order); a release heading without a
    date or a commit, a malformed sha or a version twice is a ConfigError naming the line."""
    found: list[Release] = []
    heading: tuple[int, str, date] | None = None  # the release still waiting for its commit
    for number, line in enumerate(text.splitlines(), 1):
        if match := HEADING.match(line):
            if heading is not None:
                raise _no_commit(source, *heading[:2])
            version = match["version"]
            if version == UNRELEASED:
                continue
            try:
                released = date.fromisoformat(match["date"] or "")
            except ValueError:
                raise ConfigError(
                    f"{source}:{number}: release {version} has no date (`## [{version}] - "
                    "YYYY-MM-DD`)"
                ) from None
            if any(r.version == version for r in found):
                raise ConfigError(f"{source}:{number}: release {version} appears twice")
            heading = (number, version, released)
        elif heading is not None and (match := COMMIT.match(line)):
            sha = match["sha"]
            if not SHA.fullmatch(sha):
                raise ConfigError(f"{source}:{number}: {sha!r} is not a commit sha (7-40 hex)")
            found.append(Release(heading[1], heading[2], sha))
            heading = None
    if heading is not None:
        raise _no_commit(source, *heading[:2])
    return found


def _no_commit(source: str, line: int, version: str) -> ConfigError:
    return ConfigError(
        f"{source}:{line}: release {version} records no `commit:` line",
        hint="add `commit: <full sha>` under the heading",
    )


def releases(path: Path = CHANGELOG) -> list[Release]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: no such file", hint=f"expected at {path}") from None
    return parse(text, source=path.name)


def commits(path: Path = CHANGELOG) -> dict[str, str]:
    """version -> recorded commit, newest release first."""
    return {r.version: r.commit for r in releases(path)}
