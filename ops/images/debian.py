"""Debian archive locations for baked images, taken from the host's own APT sources."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

APT_DIR = Path("/etc/apt")
FALLBACK_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Mirrors:
    archive: str
    security: str | None

    def sources(self, suite: str) -> list[str]:
        """One-line APT sources for a suite: main archive, its updates, and security."""
        lines = [f"deb {self.archive} {suite} main", f"deb {self.archive} {suite}-updates main"]
        if self.security:
            lines.append(f"deb {self.security} {suite}-security main")
        return lines


def _entries(apt_dir: Path) -> list[tuple[list[str], list[str]]]:
    """(uris, suites) of every enabled Debian source, deb822 and one-line formats alike."""
    entries: list[tuple[list[str], list[str]]] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ")):
                    fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes") != "no" and "deb" in fields.get("types", "").split():
                entries.append((fields.get("uris", "").split(), fields.get("suites", "").split()))
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = [w for w in line.split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb":
                entries.append(([words[1]], [words[2]]))
    return entries


def host_mirrors(override: str | None = None, apt_dir: Path = APT_DIR) -> Mirrors:
    archive, security = None, None
    for uris, suites in _entries(apt_dir):
        for uri in (u.rstrip("/") for u in uris):
            if any(s.endswith("-security") for s in suites):
                security = security or uri
            elif uri.endswith("/debian"):
                archive = archive or uri
    return Mirrors(archive=(override or archive or FALLBACK_MIRROR).rstrip("/"), security=security)
