"""Backup and restore through the compose target: the real stack (`invoke up`'s code, a project
of its own), its postgres container found by compose, settings from its config and secret files,
the writers stopped and started by compose. Where Qdrant and MinIO images cannot be had, the
stack keeps objects and vectors on a volume, which is what the target then reads and writes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ops.data.backup import backup
from ops.data.restore import restore
from ops.data.target import ComposeTarget
from ops.stack import roles
from ops.stack import up as stacks
from tests.support import apikeys
from tests.support.compose import isolated_project
from tests.support.processes import wait_until


class Api:
    def __init__(self, base_url: str, key: str) -> None:
        self.http = apikeys.client(base_url, key, timeout=30)

    def upload(self, title: str, lines: int) -> str:
        content = "\n".join(f"def {title}_{i}(x):\n    return x + {i}" for i in range(lines))
        response = self.http.post(
            "/api/v1/snippets", json={"title": title, "language": "python", "content": content}
        )
        assert response.status_code == 202, response.text
        sid = str(response.json()["id"])
        wait_until(lambda: self.status(sid) == "indexed", seconds=120, what=f"{title} indexed")
        return sid

    def status(self, sid: str) -> str | None:
        response = self.http.get(f"/api/v1/snippets/{sid}")
        return str(response.json()["status"]) if response.status_code == 200 else None

    def ready(self) -> bool:
        try:
            return self.http.get("/health/ready").status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="module")
def compose_stack(_engine: None) -> Iterator[tuple[ComposeTarget, Api]]:
    project, ports = isolated_project("coach-opstest")
    stacks.down(project, volumes=True)  # leftovers of a killed run
    result = stacks.up(project)
    try:
        assert result.ok, result.failed
        api = Api(f"http://127.0.0.1:{ports['HTTP_PORT']}", apikeys.dev_key(project))
        yield ComposeTarget(project), api
    finally:
        stacks.down(project, volumes=True)


def test_compose_backup_and_restore(
    compose_stack: tuple[ComposeTarget, Api], tmp_path: Path
) -> None:
    target, api = compose_stack
    kept = api.upload("kept", 60)
    made = backup(target, tmp_path)
    assert made.manifest.tables["snippets"] == 1 and made.manifest.objects["count"] == 1
    added = api.upload("added", 10)

    restored = restore(target, made.path, yes=True, backups_root=tmp_path)

    assert restored.ok and restored.stopped == roles.writers(target.config())
    running = {r["Service"] for r in target.project.ps() if r.get("State") == "running"}
    assert running >= set(roles.writers(target.config()))
    wait_until(api.ready, seconds=120, what="backend ready after the restore")
    assert api.status(added) is None and api.status(kept) == "indexed"
    answer = api.http.post(
        "/api/v1/coach/ask", json={"question": "what does kept_3 do?", "snippet_id": kept}
    )
    assert answer.status_code == 200 and answer.json()["citations"]
    started = time.monotonic()
    api.upload("after", 10)  # the worker writes to the stores the restore rewrote
    assert time.monotonic() - started < 120
