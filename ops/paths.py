"""Where things live in the repository. One place, so nothing hard-codes a layout."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHANGELOG = ROOT / "CHANGELOG.md"  # each release and its commit (ops.releases)
INFRA = ROOT / "infra"
COMPOSE_DIR = INFRA / "compose"
IMAGES_FILE = COMPOSE_DIR / ".env"  # every third-party image reference; compose reads it
BAKE_DIR = INFRA / "standins"  # Debian recipes standing in for official images
STATE_DIR = ROOT / ".state"  # gitignored: pid files, logs, resolved image env files
