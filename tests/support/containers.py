"""The container layer every Docker-backed test goes through.

- testcontainers is configured for these hosts (no Ryuk: its image cannot be pulled; dial the
  engine on localhost even though /.dockerenv exists).
- Images come from the project's resolver (local → pull → baked); an image that cannot be had
  here skips the test with the image's name.
- Every container, network and volume carries our labels: the fixtures remove what they start
  even when a test fails, and each session first sweeps what a killed earlier run left behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")

import docker
import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from ops.images.resolve import Resolved, resolve

LABEL = "org.coach.test"
RUN_LABEL = "org.coach.test.run"
PID_LABEL = "org.coach.test.pid"
RUN_ID = uuid.uuid4().hex[:12]
LABELS = {LABEL: "1", RUN_LABEL: RUN_ID, PID_LABEL: str(os.getpid())}


@cache
def resolved_image(var: str) -> Resolved:
    return resolve([var])[0]


def image_or_skip(var: str) -> str:
    """The reference to run for a *_IMAGE variable, or skip naming the missing image."""
    found = resolved_image(var)
    if not found.available:
        pytest.skip(f"image {found.pinned} unobtainable here ({found.detail})")
    return found.ref


def container(var: str) -> DockerContainer:
    """A labelled testcontainers container for the image behind a *_IMAGE variable."""
    return DockerContainer(image_or_skip(var)).with_kwargs(labels=dict(LABELS))


@contextmanager
def network() -> Iterator[Network]:
    net = Network(docker_network_kw={"labels": dict(LABELS)}).create()
    try:
        yield net
    finally:
        net.remove()


@contextmanager
def running(c: DockerContainer) -> Iterator[DockerContainer]:
    """Start, yield, and always remove (with volumes), printing logs when the body fails."""
    c.start()
    try:
        yield c
    except BaseException:
        stdout, stderr = c.get_logs()
        print(
            f"--- logs of {c.image} ---\n{stdout.decode(errors='replace')}"
            f"{stderr.decode(errors='replace')}"
        )
        raise
    finally:
        c.stop(force=True, delete_volume=True)


def _orphaned(labels: dict[str, str], run_id: str | None) -> bool:
    """This run's own resources, or those of a test run whose process is gone. Resources of a
    test session still running (in another terminal, or a parallel CI job) are left alone."""
    if run_id is not None:
        return labels.get(RUN_LABEL) == run_id
    pid = labels.get(PID_LABEL, "")
    return not (pid.isdigit() and os.path.exists(f"/proc/{pid}"))  # noqa: PTH110


def sweep(run_id: str | None = None) -> int:
    """Remove labelled containers, networks and volumes: this run's, or orphans of dead runs."""
    client = docker.from_env()
    removed = 0
    try:
        for item in client.containers.list(all=True, filters={"label": LABEL}):
            if _orphaned(item.labels, run_id):
                item.remove(force=True, v=True)
                removed += 1
        for net in client.networks.list(filters={"label": LABEL}):
            if _orphaned(net.attrs.get("Labels") or {}, run_id):
                net.remove()
                removed += 1
        for volume in client.volumes.list(filters={"label": LABEL}):
            if _orphaned(volume.attrs.get("Labels") or {}, run_id):
                volume.remove(force=True)
                removed += 1
    finally:
        client.close()
    return removed


def wait_for_postgres(dsn: str, seconds: float = 60) -> None:
    """Block until PostgreSQL accepts a connection with these credentials (bounded)."""
    import psycopg  # noqa: PLC0415 - only the tests that run PostgreSQL need the driver

    from tests.support.processes import wait_until  # noqa: PLC0415

    def accepts() -> bool:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    wait_until(accepts, seconds=seconds, what="postgres accepting connections")
