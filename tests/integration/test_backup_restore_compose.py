"""Backup and restore through the compose target: the real stack (`invoke up`'s code, a project
of its own), its postgres container found by compose, settings from its config and secret files,
the writers stopped and started by compose. Where Qdrant and MinIO images cannot be had, the
stack keeps objects and vectors on a volume, which is what the target then reads and writes."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coach.migrate import migrate
from ops.data import postgres
from ops.data.backup import backup, complete_backups, is_safety_copy
from ops.data.manifest import MANIFEST, Manifest, verify
from ops.data.restore import RestoreFailed, restore
from ops.data.target import ComposeTarget
from ops.stack import roles
from ops.stack import up as stacks
from tests.support import apikeys
from tests.support.compose import isolated_project
from tests.support.datastate import state
from tests.support.processes import ROOT, wait_until


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


PORTS: dict[str, str] = {}  # the isolated project's published ports, for the CLI's subprocess


@pytest.fixture(scope="module")
def compose_stack(_engine: None) -> Iterator[tuple[ComposeTarget, Api]]:
    project, ports = isolated_project("coach-opstest")
    PORTS.update({k: str(v) for k, v in ports.items()})
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


def running(target: ComposeTarget) -> set[str]:
    return {r["Service"] for r in target.project.ps() if r.get("State") == "running"}


def has_table(target: ComposeTarget, name: str) -> bool:
    return postgres.psql(target, f"SELECT coalesce(to_regclass('{name}')::text, '')") != [""]


def test_a_killed_restore_leaves_the_writers_stopped_and_its_printed_command_recovers(
    compose_stack: tuple[ComposeTarget, Api], tmp_path: Path
) -> None:
    """SIGKILL in the middle of pg_restore: nothing can be printed then, so the way back was
    printed before it began. The writers are still stopped, and that command brings back the
    state before the restore: rows, objects, vectors."""
    target, api = compose_stack
    writers = roles.writers(target.config())
    api.upload("before", 40)
    # A backup with enough rows that pg_restore takes a while (the kill lands mid-way).
    postgres.psql(
        target,
        "CREATE TABLE ballast AS SELECT g AS id, md5(g::text) AS pad "
        "FROM generate_series(1, 1500000) g",
    )
    root = tmp_path / "backups"
    big = backup(target, root).path
    postgres.psql(target, "DROP TABLE ballast")
    api.upload("added", 10)
    before = state(target)

    env = {**os.environ, **PORTS}
    args = ["--project", target.project.name, "--backups-dir", str(root)]
    script = [sys.executable, str(ROOT / "scripts" / "restore.py")]
    restoring = subprocess.Popen(
        [*script, *args, "--backup", big.name, "--yes", "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert restoring.stdout is not None
    recovery: dict[str, str] = {}
    for line in restoring.stdout:
        event = json.loads(line)
        if event["event"] == "recovery":
            recovery = event
        if event.get("step") == "pg_restore" and not event.get("done"):
            break
    else:
        pytest.fail(f"no pg_restore progress; exit status {restoring.wait()}")
    started = time.monotonic()
    os.killpg(restoring.pid, signal.SIGKILL)
    restoring.wait()
    print(f"killed the restore {time.monotonic() - started:.1f}s into pg_restore")

    assert recovery, "the way back was printed before pg_restore began"
    assert not running(target) & set(writers), "the writers stay stopped"
    assert not has_table(target, "ballast"), "the live database was never touched"
    command = recovery["restore_command"]
    assert command.startswith("./run python scripts/restore.py --project ")
    assert "--no-safety-backup" in command and recovery["safety_backup"] in command
    done = subprocess.run(
        [*shlex.split(command), "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert state(target) == before, "rows, objects and vectors as before the killed restore"
    assert (
        recovery["start_command"] == f"./run invoke up --no-build --project {target.project.name}"
    )
    target.start_writers(writers)  # what that command does for the writers, without a rebuild
    wait_until(api.ready, seconds=120, what="backend ready after the recovery")


def test_nothing_of_a_later_migration_survives_and_failed_restores_cost_no_good_backup(
    compose_stack: tuple[ComposeTarget, Api], tmp_path: Path
) -> None:
    target, api = compose_stack
    writers = roles.writers(target.config())
    root = tmp_path / "backups"
    first = backup(target, root).path
    postgres.psql(target, "CREATE TABLE later_feature (id int PRIMARY KEY)")  # a newer release's

    restored = restore(target, first, yes=True, backups_root=root)
    assert restored.ok and not has_table(target, "later_feature")
    asyncio.run(migrate(target.migration_settings()))  # the schema is this release's again

    # Three restores in a row that fail at their last step, each after its safety backup: a
    # backup whose manifest promises a row that its dump does not hold.
    second = backup(target, root).path
    wrong = tmp_path / "elsewhere" / first.name
    wrong.parent.mkdir()
    subprocess.run(["cp", "-a", str(first), str(wrong)], check=True)
    manifest = Manifest.loads((wrong / MANIFEST).read_text())
    manifest.tables["snippets"] += 1
    (wrong / MANIFEST).write_text(manifest.dumps())
    safety_copies = sum(map(is_safety_copy, complete_backups(root)))  # the restore above made one
    for _ in range(3):
        with pytest.raises(RestoreFailed, match="verification failed: rows in snippets"):
            restore(target, wrong, yes=True, backups_root=root)
        assert not running(target) & set(writers), "a failed restore leaves the writers stopped"
    assert sum(map(is_safety_copy, complete_backups(root))) == safety_copies + 3

    third = backup(target, root, keep=2).path
    good = [p for p in complete_backups(root) if not is_safety_copy(p)]
    assert good == [second, third], "the two newest good backups, whatever failed in between"
    assert all(verify(p) for p in good)
    target.start_writers(writers)
    wait_until(api.ready, seconds=120, what="backend ready")
