"""Backup and restore against the running app (real PostgreSQL, a Celery worker and the backend
as host processes, objects in S3): every row and every object comes back exactly, from a local
backup or from its encrypted off-site copy (a second bucket on the same S3 server, reached with
credentials of its own), and a backup that is not exactly what it was is refused before anything
is touched."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import obstore
import pyrage
import pytest

from coach.migrate import head_revision
from ops.data.backup import backup, complete_backups, fetch
from ops.data.manifest import DUMP, MANIFEST, BackupCorrupt, verify
from ops.data.offsite import Destination
from ops.data.restore import restore
from ops.settings import OpsSettings
from tests.support.ops_target import (
    delete_object,
    object_digests,
    postgres_container_id,
    put_object,
    sql,
    stack_target,
    table_rows,
)
from tests.support.processes import ROOT
from tests.support.stack import Stack, wait_ready


def source(tag: str, lines: int) -> str:
    return "\n".join(f"def {tag}_step_{i}(state):\n    return state + {i}" for i in range(lines))


def ask(stack: Stack, snippet_id: str) -> dict[str, Any]:
    with stack.client(timeout=30) as http:
        response = http.post(
            "/api/v1/coach/ask", json={"question": "what does step do?", "snippet_id": snippet_id}
        )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_restore_brings_back_every_row_and_object(app_stack: Stack, tmp_path: Path) -> None:
    ids = [app_stack.upload(f"s{i}.py", source(f"s{i}", 30 + 25 * i))["id"] for i in range(3)]
    for sid in ids:
        app_stack.wait_indexed(sid)
    for sid in ids[:2]:
        assert ask(app_stack, sid)["citations"]
    rows, objects = table_rows(app_stack), object_digests(app_stack)
    assert len(rows["chunks"]) > 3 and len(rows["questions"]) >= 2 and len(objects) >= 3

    root = tmp_path / "backups"
    identity = pyrage.x25519.Identity.generate()
    offsite = Offsite(app_stack, tmp_path, str(identity.to_public()))
    target = stack_target(app_stack)
    made = backup(target, root, offsite_to=Destination.from_settings(offsite.settings))
    manifest = made.manifest
    assert _modes(made.path) == {0o700, 0o600} and _modes(root) == {0o700, 0o600}
    assert complete_backups(root) == [made.path] and not list(root.glob("*.partial"))
    assert manifest.tables == {table: len(found) for table, found in rows.items()}
    assert manifest.objects["count"] == len(objects)
    assert manifest.alembic_revision == head_revision()
    assert manifest.tools["pg_dump"].startswith("pg_dump (PostgreSQL) ")
    assert manifest.vectors["snapshot"] is None and "rebuilds" in manifest.vectors["note"]
    assert verify(made.path) == manifest
    sealed = _objects(offsite, made.path.name)
    assert set(sealed) == {f"{name}.age" for name in [*manifest.files, MANIFEST]}
    assert sealed[f"{DUMP}.age"] != (made.path / DUMP).read_bytes()
    assert b"s0_step_1" not in sealed[f"objects/snippets/{ids[0]}.age"], "encrypted"

    # Everything changes: a snippet deleted (its chunks and citations with it), a title edited,
    # a snippet added; an object deleted, another overwritten.
    sql(app_stack, "DELETE FROM snippets WHERE id = %s", ids[0])
    sql(app_stack, "UPDATE snippets SET title = 'renamed.py' WHERE id = %s", ids[1])
    added = app_stack.upload("added.py", source("added", 20))["id"]
    app_stack.wait_indexed(added)
    delete_object(app_stack, f"snippets/{ids[2]}")
    put_object(app_stack, f"snippets/{ids[1]}", b"overwritten\n")
    assert table_rows(app_stack) != rows and object_digests(app_stack) != objects

    # The restore host has the bucket but not yet the private key: refused, nothing touched.
    changed = table_rows(app_stack)
    elsewhere = tmp_path / "restore-host"
    args = ("--backup", made.path.name, "--from-offsite", "--yes", "--no-writers")
    last = _script(
        app_stack, "restore.py", *args, "--backups-dir", str(elsewhere), exit_code=1,
        env=offsite.env,
    )[-1]  # fmt: skip
    assert last["event"] == "error" and "is encrypted (age) and no identity" in last["message"]
    assert table_rows(app_stack) == changed and not (elsewhere / made.path.name).exists()

    key = tmp_path / "keys" / "backup-identity.txt"
    key.parent.mkdir(mode=0o700)
    key.write_text(f"{identity}\n")
    fetched = fetch(elsewhere, made.path.name, Destination.from_settings(offsite.settings), key)
    assert verify(fetched) == manifest and _modes(fetched) == {0o700, 0o600}
    restored = restore(target, fetched, yes=True, backups_root=elsewhere)

    assert restored.ok, restored.checks
    assert table_rows(app_stack) == rows, "every row, every column, as backed up"
    assert object_digests(app_stack) == objects, "every object, byte for byte"
    assert restored.stopped == ["backend", "worker"] and restored.vectors == "reindex"
    assert all(app_stack.procs[name].alive() for name in ("backend", "worker"))
    assert restored.safety_backup is not None
    safety = verify(restored.safety_backup)
    assert safety.tables["snippets"] == len(rows["snippets"]), "2 kept, 1 deleted, 1 added"
    assert set(safety.object_files()) == set(objects) - {f"snippets/{ids[2]}"} | {
        f"snippets/{added}"
    }

    wait_ready(app_stack)
    cited = ask(app_stack, ids[0])["citations"]
    assert cited and all(c["snippet_id"] == ids[0] for c in cited), "vectors rebuilt"
    with app_stack.client() as http:
        assert http.get(f"/api/v1/snippets/{added}").status_code == 404
        assert http.get(f"/api/v1/snippets/{ids[1]}").json()["title"] == "s1.py"
        assert http.get(f"/api/v1/snippets/{ids[1]}/content").text == source("s1", 55)
    again = app_stack.upload("after.py", source("after", 10))["id"]
    assert app_stack.wait_indexed(again)["status"] == "indexed", "the worker is back at work"


def test_a_corrupted_backup_is_refused_before_anything_is_touched(
    app_stack: Stack, tmp_path: Path
) -> None:
    sid = app_stack.upload("kept.py", source("kept", 10))["id"]
    app_stack.wait_indexed(sid)
    root = tmp_path / "backups"
    # Made by the command an operator runs: JSON lines only on stdout, the result last.
    events = _script(app_stack, "backup.py", "--dest", str(root), "--keep", "3")
    assert events[-1]["event"] == "result" and events[-1]["tables"]["snippets"] >= 1
    [made] = complete_backups(root)
    assert events[-1]["path"] == str(made)

    # A dry run is the whole preflight and says what would change; it changes nothing.
    sql(app_stack, "UPDATE snippets SET title = 'changed before the dry run' WHERE id = %s", sid)
    before, dry_calls = table_rows(app_stack), list[str]()
    dry = restore(stack_target(app_stack, dry_calls), made, dry_run=True, backups_root=root)
    assert dry.checks == [] and dry_calls == [] and table_rows(app_stack) == before
    assert complete_backups(root) == [made], "no safety backup on a dry run"
    args = ("--backup", str(made), "--dry-run", "--no-writers", "--backups-dir", str(root))
    planned = _script(app_stack, "restore.py", *args)[-1]
    assert planned["dry_run"] and planned["tables_after"] == events[-1]["tables"]
    assert table_rows(app_stack) == before

    dump = made / DUMP
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    dump.write_bytes(bytes(data))
    sql(app_stack, "UPDATE snippets SET title = 'changed after the backup' WHERE id = %s", sid)
    rows, objects = table_rows(app_stack), object_digests(app_stack)

    calls: list[str] = []
    with pytest.raises(BackupCorrupt, match=r"postgres\.dump: sha256 .* does not match"):
        restore(stack_target(app_stack, calls), made, yes=True, backups_root=root)

    assert calls == [], "the writers were never stopped"
    assert table_rows(app_stack) == rows and object_digests(app_stack) == objects
    assert complete_backups(root) == [made], "no safety backup either: nothing began"

    # The command an operator runs says the same, as its last JSON line, and exits 1.
    args = ("--backup", str(made), "--yes", "--no-writers", "--backups-dir", str(root))
    last = _script(app_stack, "restore.py", *args, exit_code=1)[-1]
    assert last["event"] == "error" and f"{dump}: sha256" in last["message"]
    assert table_rows(app_stack) == rows


def _script(
    stack: Stack,
    name: str,
    *args: str,
    exit_code: int = 0,
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run scripts/<name> --json against the stack's postgres container; its stdout events."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / name),
            *args,
            "--json",
            "--postgres-container",
            postgres_container_id(stack),
        ],
        env={**stack.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == exit_code, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


class Offsite:
    """The off-site destination: its own bucket on the stack's S3 server, its own key pair
    (moto takes any), its secret in a file; the settings as COACH_* variables, as an operator
    sets them."""

    def __init__(self, stack: Stack, tmp_path: Path, recipient: str) -> None:
        bucket = "coach-offsite"
        httpx.put(f"{stack.env['S3_ENDPOINT_URL']}/{bucket}", timeout=10).raise_for_status()
        secret = tmp_path / "offsite_secret_key"
        secret.write_text("offsite-writer-secret\n")
        self.env = {
            "COACH_OFFSITE_URL": f"s3://{bucket}/nightly",
            "COACH_OFFSITE_ENDPOINT_URL": stack.env["S3_ENDPOINT_URL"],
            "COACH_OFFSITE_ACCESS_KEY_ID": "offsite-writer",
            "COACH_OFFSITE_SECRET_KEY_FILE": str(secret),
            "COACH_BACKUP_AGE_RECIPIENT": recipient,
        }
        assert self.env["COACH_OFFSITE_ACCESS_KEY_ID"] != stack.env["S3_ACCESS_KEY_ID"]
        fields = {k.removeprefix("COACH_").lower(): v for k, v in self.env.items()}
        self.settings = OpsSettings.model_validate(fields)


def _objects(offsite: Offsite, name: str) -> dict[str, bytes]:
    """Every object of a backup's off-site copy, as stored."""
    store = Destination.from_settings(offsite.settings).store(name)
    return {
        item["path"]: bytes(obstore.get(store, item["path"]).bytes())
        for batch in obstore.list(store)
        for item in batch
    }


def _modes(directory: Path) -> set[int]:
    """The permission bits of `directory` and of everything in it."""
    return {stat.S_IMODE(os.lstat(p).st_mode) for p in [directory, *directory.rglob("*")]}
