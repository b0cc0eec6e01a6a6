"""Qdrant collection snapshots over the REST API (a server only: local mode has none).

A snapshot restores only into the same minor version, so the server's version goes into the
manifest; it is recovered into a new collection (`priority=snapshot`: the default "replica"
priority would yield an empty collection), then the alias swaps to it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from coach.settings import Settings
from ops.data.manifest import CHUNK
from ops.data.private import private_open


def client(settings: Settings, *, timeout: float = 600) -> httpx.Client:
    assert settings.qdrant_url, "snapshots need a Qdrant server"
    key = settings.qdrant_api_key.get_secret_value()
    return httpx.Client(
        base_url=settings.qdrant_url, headers={"api-key": key} if key else {}, timeout=timeout
    )


def version(http: httpx.Client) -> str:
    response = http.get("/")
    response.raise_for_status()
    return str(response.json().get("version", "unknown"))


def same_minor(a: str, b: str) -> bool:
    return a.split(".")[:2] == b.split(".")[:2]


def snapshot(
    http: httpx.Client, collection: str, dest: Path, progress: Callable[[int], None]
) -> dict[str, Any]:
    """Create a snapshot of `collection`, download it to `dest`, delete it on the server (the
    server keeps every snapshot until told otherwise). Returns Qdrant's description of it."""
    created = http.post(f"/collections/{collection}/snapshots", params={"wait": "true"})
    created.raise_for_status()
    info: dict[str, Any] = created.json()["result"]
    url = f"/collections/{collection}/snapshots/{info['name']}"
    try:
        with http.stream("GET", url) as response, private_open(dest) as out:
            response.raise_for_status()
            written = 0
            for block in response.iter_bytes(CHUNK):
                out.write(block)
                written += len(block)
                progress(written)
    finally:
        http.delete(url, params={"wait": "true"})
    return info


def recover(http: httpx.Client, collection: str, source: Path) -> None:
    """Upload a snapshot file into a new collection `collection`."""
    with source.open("rb") as stream:
        response = http.post(
            f"/collections/{collection}/snapshots/upload",
            params={"priority": "snapshot", "wait": "true"},
            files={"snapshot": (source.name, stream, "application/octet-stream")},
        )
    response.raise_for_status()
