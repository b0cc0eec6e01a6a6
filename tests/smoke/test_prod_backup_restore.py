"""Backup and restore of a production stack from the host with nothing but `--prod`: its data
services publish no port and no COACH_TARGET_* is set, so the tooling reaches PostgreSQL, the
object store and Qdrant from inside the stack's own network (ops/data/tunnel.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.data.backup import complete_backups
from ops.data.target import OVERRIDE_PREFIX, ComposeTarget
from ops.paths import ROOT
from ops.proc import run
from ops.stack import roles
from tests.support import flow
from tests.support.datastate import state
from tests.support.processes import free_port, wait_until
from tests.support.prod import ProdStack, prod_stack

INVOKE = Path(sys.executable).parent / "invoke"
READ_HEALTH = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/health').read().decode())"
ABSENT = "example.invalid/qdrant/qdrant:v0-absent"  # no registry resolves it, no store has it


@pytest.fixture(scope="module")
def prod(docker_host: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProdStack]:
    with prod_stack("coach-smoke-proddata", tmp_path_factory.mktemp("proddata")) as stack:
        if not stack.result.ok:
            pytest.fail(f"production stack not healthy: {stack.result.failed}")
        yield stack


def invoke(prod: ProdStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`invoke ARGS --prod --project <this stack>` as an operator types it: the project's file
    overrides, and no COACH_TARGET_* at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OVERRIDE_PREFIX)}
    return subprocess.run(
        [str(INVOKE), *args, "--prod", "--project", prod.project.name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env | prod.environ() | {"NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        timeout=600,
        check=False,
    )


def current(prod: ProdStack) -> dict[str, object]:
    target = ComposeTarget(prod.project)
    try:
        return state(target)
    finally:
        target.close()


def test_backup_then_restore_with_prod_alone_brings_every_row_object_and_vector_back(
    prod: ProdStack, tmp_path: Path
) -> None:
    config = prod.project.config()
    published = {
        service: r.get("Publishers") or []
        for r in prod.project.ps()
        if (service := r["Service"]) in roles.services_with(config, role="data")
    }
    assert published and not any(p.get("PublishedPort") for ps in published.values() for p in ps)
    key = prod.create_key()
    with prod.client(key) as http:
        kept = [
            flow.upload(http, f"def kept_{i}(x):\n    return x * {i}\n", f"k{i}.py")
            for i in range(3)
        ]
        for sid in kept:
            flow.wait_indexed(http, sid, seconds=120)
    before = current(prod)
    assert before["vectors"] and len(before["objects"]) == 3  # type: ignore[arg-type]

    made = invoke(prod, "backup", "--dest", str(tmp_path), "--json")
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    (name,) = [p.name for p in complete_backups(tmp_path)]

    with prod.client(key) as http:  # what the restore must take away again
        added = flow.upload(http, "def added(x):\n    return -x\n", "a.py")
        flow.wait_indexed(http, added, seconds=120)
    assert current(prod) != before

    restored = invoke(prod, "restore", "--backup", name, "--backups-dir", str(tmp_path), "--yes")
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
    assert current(prod) == before, "rows, objects (sha256) and vectors as at the backup"
    with prod.client(key) as http:
        wait_until(
            lambda: http.get("/health/ready").status_code == 200,
            seconds=120,
            what="production stack ready after the restore",
        )
        listed = {s["id"] for s in http.get("/api/v1/snippets").json()["items"]}
    assert listed == set(kept), "the snippet added after the backup is gone, the others kept"
    print(json.dumps({"backup": name, "restored": True}))


def test_production_runs_on_local_stores_only_when_allowed_and_then_says_degraded(
    prod: ProdStack,
) -> None:
    """Without the Qdrant image `up --prod` stops, naming it and the flag (the image made
    unobtainable on purpose, so this holds where the image exists too); with
    --allow-local-stores (the running fixture) it is up, and /health says degraded."""
    other = {"HTTPS_PORT": str(free_port()), "HTTP_PORT": str(free_port())}
    refused = subprocess.run(
        [str(INVOKE), "up", "--prod", "--project", "coach-smoke-noqdrant", "--no-build"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | prod.environ() | other | {"NO_COLOR": "1", "QDRANT_IMAGE": ABSENT},
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1, said[-3000:]
    assert "qdrant" in said and "--allow-local-stores" in said, said[-3000:]
    assert not run(
        [
            "docker",
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.compose.project=coach-smoke-noqdrant",
        ],
        capture=True,
        quiet=True,
    ).stdout.strip(), "nothing of the refused stack was started"

    if "qdrant" not in prod.result.left_out:
        pytest.skip("the Qdrant image is present: the running stack is not on local stores")
    with prod.client() as https:  # what a load balancer sees: no reason outside
        assert https.get("/health/ready").json()["status"] == "degraded"
    inside = prod.project.run(
        "exec", "-T", "backend", "python", "-c", READ_HEALTH, capture=True, quiet=True
    )  # the operator's view on the app network: the reason too
    health = json.loads(inside.stdout)
    assert (health["status"], health["reason"]) == ("degraded", "local stores: objects, vectors")
