"""The Debian stand-ins honour the interface our compose files rely on."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import docker
import psycopg
import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ops.paths import COMPOSE_DIR
from tests.support.containers import LABELS, container, image_or_skip, running

T = TypeVar("T")


def eventually(attempt: Callable[[], T], *, seconds: float = 60.0) -> T:
    """Retry until it succeeds; bounded in time, re-raising the last error."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return attempt()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_postgres_reads_password_from_file_secret(tmp_path: Path) -> None:
    password = secrets.token_urlsafe(18)
    secret = tmp_path / "postgres_password"
    secret.write_text(password + "\n")  # Docker secrets often end in a newline; it must not count
    secret.chmod(0o644)
    pg = (
        container("POSTGRES_IMAGE")
        .with_env("POSTGRES_USER", "coach")
        .with_env("POSTGRES_DB", "coach")
        .with_env("POSTGRES_PASSWORD_FILE", "/run/secrets/postgres_password")
        .with_volume_mapping(secret, "/run/secrets/postgres_password", "ro")
        .with_exposed_ports(5432)
    )
    with running(pg):
        dsn = (
            f"host={pg.get_container_host_ip()} port={pg.get_exposed_port(5432)} "
            f"user=coach dbname=coach connect_timeout=3"
        )
        with eventually(lambda: psycopg.connect(f"{dsn} password={password}")) as conn:
            conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
            conn.execute("INSERT INTO notes (body) VALUES ('hello'), ('world')")
            rows = conn.execute("SELECT body FROM notes ORDER BY id").fetchall()
            assert rows == [("hello",), ("world",)]
            version = conn.execute("SHOW server_version_num").fetchone()
            assert version is not None and int(version[0]) // 10000 == 17
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(f"{dsn} password=wrong-{password}")


def test_redis_requires_its_password_and_answers_pong() -> None:
    password = secrets.token_urlsafe(18)
    rd = (
        container("REDIS_IMAGE")
        .with_command(["redis-server", "--requirepass", password, "--appendonly", "yes"])
        .with_exposed_ports(6379)
    )
    with running(rd):
        host, port = rd.get_container_host_ip(), int(rd.get_exposed_port(6379))
        client = redis.Redis(host=host, port=port, password=password, socket_timeout=3)
        assert eventually(client.ping) is True
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=host, port=port, socket_timeout=3).get("anything")
        uid = rd.exec(["sh", "-c", "stat -c %u /proc/1"]).output.decode().strip()
        assert uid == "999", "redis-server must have dropped root like the official image"


def test_python_base_runs_python_311_as_non_root() -> None:
    client = docker.from_env()
    try:
        out = client.containers.run(
            image_or_skip("PYTHON_IMAGE"),
            ["python", "-c", "import os, sys, venv; print(sys.version_info[:2], os.getuid())"],
            user="10001:10001",
            remove=True,
            labels=dict(LABELS),
        )
    finally:
        client.close()
    assert out.decode().strip() == "(3, 11) 10001"


def test_python_base_ships_gdbm_setuptools_wheel_and_pip_like_the_official_image() -> None:
    # Debian splits these out of python3; images built FROM the official one may rely on them.
    # pip by its metadata: importing pip before setuptools makes setuptools' own distutils shim
    # fail on 3.11 (upstream setuptools behaviour, see pypa/pip#8761), not a flaw of the image.
    code = "import dbm.gnu, setuptools, wheel; from importlib.metadata import version as v; "
    code += "print(v('pip'))"
    client = docker.from_env()
    try:
        out = client.containers.run(
            image_or_skip("PYTHON_IMAGE"),
            ["python3", "-c", code],
            user="10001:10001",
            remove=True,
            labels=dict(LABELS),
        )
    finally:
        client.close()
    assert out.decode().strip().split(".")[0].isdigit(), out


def test_node_exporter_reports_a_file_system_mounted_under_its_rootfs() -> None:
    """With the compose service's flags, as its non-root user on a read-only root without
    capabilities: /host/root is reported as mountpoint "/", a file system mounted below it (as
    the engine's data-root is) under its own path, and nothing of the container's own."""
    service = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())["services"]
    flags = [flag.replace("$$", "$") for flag in service["node-exporter"]["command"]]
    client = docker.from_env()
    try:
        box = client.containers.run(
            image_or_skip("NODE_EXPORTER_IMAGE"),
            flags,
            detach=True,
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            # tmpfs of sizes to recognise them by (what a bind mount shows, and whether the
            # exporter counts it at all, depends on the host's file systems).
            tmpfs={"/host/root": "size=64m", "/host/root/srv/docker": "size=32m"},
            labels=dict(LABELS),
        )
        try:

            def scrape() -> str:
                done = box.exec_run(["wget", "-qO-", "http://127.0.0.1:9100/metrics"])
                assert done.exit_code == 0, done.output
                return bytes(done.output).decode()

            text = eventually(scrape, seconds=30)
            user = str(box.attrs["Config"]["User"])  # the image's USER: compose sets none
        finally:
            box.remove(force=True)
    finally:
        client.close()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    avail = {
        s.labels["mountpoint"]: s.value for s in samples if s.name == "node_filesystem_avail_bytes"
    }
    assert avail == {"/": 64 * 2**20, "/srv/docker": 32 * 2**20}, avail
    collectors = {
        s.labels["collector"]: s.value for s in samples if s.name == "node_scrape_collector_success"
    }
    assert collectors["filesystem"] == 1 and "systemd" not in collectors, collectors
    assert user.partition(":")[0] == "65534", "the official image runs as nobody"
