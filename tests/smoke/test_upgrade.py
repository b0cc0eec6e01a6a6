"""The upgrade drill: the previous release (a git worktree at the commit CHANGELOG.md records
for it, its own compose files and its own image) comes up under a project of its own, data is
written through its API, then `invoke upgrade` of this checkout moves that project to the
working tree's code while a load thread counts what nginx answers. Every row, object and
vector is kept, the new migration applied; and the release's backup restores into the new
version, migrated forward."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from coach.migrate import head_revision
from ops import releases
from ops.data.backup import backup
from ops.data.manifest import MANIFEST, Manifest
from ops.data.restore import restore
from ops.data.target import ComposeTarget
from ops.images.resolve import RESOLVED_ENV
from ops.paths import ROOT, STATE_DIR
from ops.stack import secrets
from ops.stack import up as stacks
from ops.stack import upgrade as upgrades
from ops.stack.project import Project
from tests.support import flow
from tests.support.compose import isolated_project
from tests.support.processes import wait_until

PREVIOUS = "0.1.0"
NAME = "coach-upgrade-drill"
OLD_IMAGE = "coach/app:upgrade-drill-old"
NEW_IMAGE = "coach/app:upgrade-drill-new"

# Run inside the worktree with its own ops code: its `invoke up` (stack.up), images taken from
# the ones this checkout resolved (the release's resolver would bake its stand-ins again).
OLD_UP = """
import json, subprocess, sys
from ops import stack
from ops.compose import Project
from ops.images.catalog import load_images
from ops.images.resolve import Resolved
refs = dict(l.split("=", 1) for l in open(sys.argv[2]).read().splitlines()
            if l.strip() and not l.startswith("#"))
def resolve():
    found = []
    for var, pinned in load_images().items():
        ref = refs.get(var, str(pinned))
        ok = not subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode
        source = "local" if ok else "unavailable"
        found.append(Resolved(var, pinned, ref, source, "" if ok else "absent"))
    return found
stack.resolve = resolve
result = stack.up(Project("dev", project_name=sys.argv[1]))
print(json.dumps({"ok": result.ok, "failed": result.failed}))
sys.exit(0 if result.ok else 1)
"""


@dataclass
class Drill:
    worktree: Path
    workdir: Path
    env: dict[str, str]  # ports, secrets and image of the drill's project, for both releases
    base_url: str

    def new_project(self) -> Project:
        return Project(
            "dev",
            project_name=NAME,
            overrides=(
                *((k, v) for k, v in self.env.items() if k != "APP_IMAGE"),
                ("APP_IMAGE", NEW_IMAGE),
            ),
        )


def _git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def drill() -> Iterator[Drill]:
    commit = releases.commits()[PREVIOUS]
    workdir = Path(tempfile.mkdtemp(prefix="coach-upgrade-"))
    worktree = workdir / "release"
    _git("worktree", "add", "--detach", str(worktree), commit)
    _, ports = isolated_project(NAME)
    # One set of secrets for both releases: the new one's names are a superset, and PostgreSQL
    # keeps the password its volume was initialised with.
    secrets.generate("dev", root=workdir / "secrets")
    env = {k: str(v) for k, v in ports.items()} | {
        "SECRETS_DIR": str(workdir / "secrets" / "dev"),
        "APP_IMAGE": OLD_IMAGE,
    }
    drill = Drill(worktree, workdir, env, f"http://127.0.0.1:{ports['HTTP_PORT']}")
    try:
        yield drill
    finally:
        project = drill.new_project()
        stacks.down(project, volumes=True)
        for tag in (OLD_IMAGE, NEW_IMAGE, f"coach/app:rollback-{NAME}"):
            subprocess.run(["docker", "rmi", "--force", tag], capture_output=True, check=False)
        _git("worktree", "remove", "--force", str(worktree))
        (STATE_DIR / f"upgrade.{NAME}.previous.json").unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _old_up(drill: Drill) -> None:
    stacks.down(drill.new_project(), volumes=True)  # leftovers of a killed run
    done = subprocess.run(
        [sys.executable, "-c", OLD_UP, NAME, str(RESOLVED_ENV)],
        cwd=drill.worktree,
        env=os.environ | drill.env | {"PYTHONPATH": str(drill.worktree)},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert done.returncode == 0, f"v{PREVIOUS} did not come up:\n{done.stdout}\n{done.stderr}"


class Load(threading.Thread):
    """GETs through nginx until stopped (bounded in count and time): status -> count.
    /health/ready: both releases' nginx pass it to the backend, which answers it without a key
    (0.1.0 has none, the new version requires one on /api/v1), and only once its stores answer:
    so it counts what a client meets, not just that nginx is up."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.stop = threading.Event()
        self.seen: Counter[str] = Counter()

    def run(self) -> None:
        deadline = time.monotonic() + 900
        with httpx.Client(base_url=self.base_url, timeout=5) as http:
            while not self.stop.is_set() and time.monotonic() < deadline and self.total < 50_000:
                try:
                    self.seen[str(http.get("/health/ready").status_code)] += 1
                except httpx.HTTPError as exc:
                    self.seen[type(exc).__name__] += 1
                time.sleep(0.05)

    @property
    def total(self) -> int:
        return sum(self.seen.values())

    @property
    def failed(self) -> int:
        return self.total - self.seen["200"]


def _manifest(path: Path) -> Manifest:
    return Manifest.loads((path / MANIFEST).read_text())


def _old_up_with_data(drill: Drill) -> list[str]:
    _old_up(drill)
    with httpx.Client(base_url=drill.base_url, timeout=30) as http:  # v0.1.0: no API keys
        sids = [flow.upload_index_ask(http)]
        sids += [flow.upload(http, f"def f{n}():\n    return {n}\n", f"f{n}.py") for n in range(3)]
        for sid in sids[1:]:
            flow.wait_indexed(http, sid)
    return sids


def _upgrade(drill: Drill, *args: str) -> tuple[subprocess.CompletedProcess[str], Load]:
    """`invoke upgrade` of this checkout, nginx probed throughout; prints the figures."""
    load = Load(drill.base_url)
    load.start()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "upgrade", "--project", NAME,
         "--backups-dir", str(drill.workdir / "backups"), *args],
        cwd=ROOT, env=os.environ | drill.env | {"APP_IMAGE": NEW_IMAGE},
        capture_output=True, text=True, check=False, timeout=1200,
    )  # fmt: skip
    seconds = time.monotonic() - started
    time.sleep(3)  # what nginx answers just after, too
    load.stop.set()
    load.join(10)
    table = done.stdout[max(done.stdout.rfind("\nstep "), 0) :]
    print(f"\n{table}\nupgrade took {seconds:.0f}s; through nginx /health/ready: "
          f"{load.failed} failed / {load.total}: {dict(load.seen)}")  # fmt: skip
    return done, load


def _counts(manifest: Manifest) -> str:
    return f"rows {manifest.tables}, objects {manifest.objects['count']}"


def test_upgrade_from_the_previous_release_keeps_data_and_serves(drill: Drill) -> None:
    sids = _old_up_with_data(drill)
    done, load = _upgrade(drill)
    assert done.returncode == 0, f"upgrade failed:\n{done.stdout}\n{done.stderr}"
    assert load.seen["200"] > 0
    assert not [s for s in load.seen if s.startswith("5") and s not in ("502", "503", "504")]
    assert "500" not in load.seen

    project = drill.new_project()
    [before_path] = sorted((drill.workdir / "backups").glob("*-pre-upgrade"))
    before = _manifest(before_path)
    assert before.alembic_revision == "0001"
    config = project.config()
    assert upgrades.running_revision(project, config) == head_revision() == "0002"
    # closing(): the files the tooling wrote into the local-stores volume go back to the app's
    # user (ComposeTarget.close), or the backend could not take its turn on them afterwards.
    with closing(ComposeTarget(project)) as target:
        after = backup(target, drill.workdir / "backups", label="after-upgrade").manifest
    print(f"before: {_counts(before)}, vectors {before.vectors}\nafter:  {_counts(after)}, "
          f"vectors {after.vectors}")  # fmt: skip
    for table, rows in before.tables.items():
        assert after.tables.get(table) == rows, (table, before.tables, after.tables)
    assert after.objects["count"] == before.objects["count"] == len(sids)
    # A count of points only where a Qdrant server ran (local mode has no snapshot; its
    # vectors are then seen in use: the new upload below is indexed and searched beside them).
    if "points" in before.vectors:
        assert after.vectors["points"] == before.vectors["points"] == before.tables["chunks"]
    before_objects = {k: before.files[f].sha256 for k, f in before.object_files().items()}
    after_objects = {k: after.files[f].sha256 for k, f in after.object_files().items()}
    assert after_objects == before_objects

    # The new code serves the old rows (tenant 'default' after 0002) to a key of that tenant
    # only; the dev key sees its own tenant: what a v0.1.0 client gets once it has a key.
    key = (Path(drill.env["SECRETS_DIR"]) / secrets.DEV_API_KEY).read_text().strip()
    with httpx.Client(
        base_url=drill.base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        assert http.get("/api/v1/snippets").status_code == 200
        assert httpx.get(f"{drill.base_url}/api/v1/snippets").status_code == 401
        flow.wait_indexed(http, flow.upload(http, "x = 1\n", "new.py"))

    # The release's backup restores into the new version, migrated forward.
    with closing(ComposeTarget(project)) as target:
        restored = restore(target, before_path, yes=True, backups_root=drill.workdir / "backups")
    assert restored.ok
    assert restored.migrated == ("0001", head_revision())
    wait_until(
        lambda: httpx.get(f"{drill.base_url}/health/ready", timeout=5).status_code == 200,
        seconds=120,
        what="ready after the restore",
    )


def test_a_failed_upgrade_rolls_back_to_the_previous_release(drill: Drill) -> None:
    """A failure after the migration (here: a wait timeout no new container can meet, the
    first health probe runs after 10 s) puts the schema and the old release back."""
    sids = _old_up_with_data(drill)
    with httpx.Client(base_url=drill.base_url, timeout=30) as http:
        listed = http.get("/api/v1/snippets").json()
    done, _ = _upgrade(drill, "--wait-timeout", "5")
    assert done.returncode == 1, done.stdout
    assert "schema back" in done.stdout and "rolled back to" in done.stdout, done.stdout

    project = drill.new_project()
    assert upgrades.running_revision(project, project.config()) == "0001"
    containers = project.run("ps", "-q", "backend", capture=True, quiet=True).stdout.split()
    images = subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", *containers],
                            capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert images == [f"coach/app:rollback-{NAME}"]
    with httpx.Client(base_url=drill.base_url, timeout=30) as http:  # 0.1.0 again: no key
        wait_until(lambda: http.get("/health/ready").status_code == 200, seconds=120,
                   what="the previous release ready")  # fmt: skip
        assert http.get("/api/v1/snippets").json() == listed
        assert {s["id"] for s in listed["items"]} >= set(sids)
        flow.wait_indexed(http, flow.upload(http, "y = 2\n", "after.py"))
