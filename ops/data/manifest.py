"""A backup's manifest.json: what it holds and the sha256 and size of every file in it, checked
in full before a restore touches anything."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ops.errors import OpsError

FORMAT = 1
MANIFEST = "manifest.json"
DUMP = "postgres.dump"
OBJECTS = "objects"
QDRANT = "qdrant"
TABLES = ("snippets", "chunks", "questions")
CHUNK = 1024 * 1024


class BackupCorrupt(OpsError):
    """The backup does not match its manifest: restoring it would restore something else."""


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass
class Manifest:
    name: str
    created_at: str
    app_version: str
    alembic_revision: str | None
    tables: dict[str, int]
    objects: dict[str, Any]  # count, bytes, store kind
    vectors: dict[str, Any]  # mode, collection, snapshot file (or None), points, note
    tools: dict[str, str]
    files: dict[str, FileEntry] = field(default_factory=dict)
    format: int = FORMAT

    def object_files(self) -> dict[str, str]:
        """Object key -> file in the backup, for every object it holds."""
        prefix = f"{OBJECTS}/"
        return {f.removeprefix(prefix): f for f in self.files if f.startswith(prefix)}

    def dumps(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def loads(cls, text: str) -> Manifest:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"manifest format {data.get('format')!r}; this tool reads {FORMAT}")
        data["files"] = {name: FileEntry(**entry) for name, entry in data["files"].items()}
        return cls(**data)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def object_path(key: str) -> str:
    """Where an object key lives in a backup; keys that could escape the directory refused."""
    if any(part in ("", ".", "..") for part in key.split("/")):  # also "", "/x", "a//b", "a/"
        raise OpsError(f"object key {key!r} cannot be stored safely as a file")
    return f"{OBJECTS}/{key}"


def verify(directory: Path) -> Manifest:
    """The manifest, once every file it lists exists with its size and sha256 — or
    BackupCorrupt naming the first file that does not."""
    manifest_file = directory / MANIFEST
    if not directory.is_dir():
        raise BackupCorrupt(f"{directory}: no such backup directory")
    try:
        manifest = Manifest.loads(manifest_file.read_text())
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BackupCorrupt(f"{manifest_file}: unreadable manifest ({exc})") from exc
    if DUMP not in manifest.files:
        raise BackupCorrupt(f"{manifest_file}: lists no {DUMP}")
    root = directory.resolve()
    for name, entry in sorted(manifest.files.items()):
        path = (directory / name).resolve()
        if not path.is_relative_to(root):
            raise BackupCorrupt(f"{manifest_file}: {name!r} points outside the backup")
        if not path.is_file():
            raise BackupCorrupt(f"{directory / name}: missing (listed in the manifest)")
        size = path.stat().st_size
        if size != entry.size:
            raise BackupCorrupt(f"{directory / name}: {size} bytes, the manifest says {entry.size}")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise BackupCorrupt(
                f"{directory / name}: sha256 {actual} does not match the manifest's {entry.sha256}"
            )
    return manifest
