"""Least privilege on the running dev stack: the app's PostgreSQL role, Redis user and S3 user
can do the app's work and nothing more; the exporters read with their own users; Prometheus'
lifecycle API is off; a container holds only the secrets it reads."""

from __future__ import annotations

from pathlib import Path

import boto3  # type: ignore[import-untyped]
import httpx
import psycopg
import pytest
import redis
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from tests.smoke.conftest import SmokeStack
from tests.support.processes import wait_until


def _secret(smoke: SmokeStack, name: str) -> str:
    path = Path(smoke.project.config()["secrets"][name]["file"])
    return path.read_text().rstrip("\r\n")


def test_app_database_role_cannot_escalate_run_programs_or_drop(smoke: SmokeStack) -> None:
    dsn = (
        f"host=127.0.0.1 port={smoke.ports['DEV_POSTGRES_PORT']} dbname=coach user=coach_app "
        f"password={_secret(smoke, 'postgres_app_password')}"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM snippets").fetchone() is not None
        for sql in (
            "CREATE ROLE intruder SUPERUSER LOGIN",
            "COPY (SELECT 1) TO PROGRAM 'id'",
            "DROP TABLE snippets",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    # The superuser's password is not what the app was given.
    assert _secret(smoke, "postgres_password") != _secret(smoke, "postgres_app_password")


def test_app_redis_user_cannot_reconfigure_or_flush(smoke: SmokeStack) -> None:
    port = smoke.ports["DEV_REDIS_PORT"]
    app = redis.Redis(
        port=port, username="app", password=_secret(smoke, "redis_password"), socket_timeout=5
    )
    assert app.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.config_set("maxmemory", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.flushall()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port, socket_timeout=5).get("anything")  # the default user is off


def test_app_s3_user_cannot_create_a_bucket(smoke: SmokeStack) -> None:
    if "minio" in smoke.result.left_out:
        image = next(r.pinned for r in smoke.result.resolved if r.var == "MINIO_IMAGE")
        pytest.skip(f"image {image} (MINIO_IMAGE) unobtainable here: no MinIO to ask")
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{smoke.ports['DEV_MINIO_PORT']}",
        aws_access_key_id="coach-app",
        aws_secret_access_key=_secret(smoke, "minio_app_password"),
        region_name="us-east-1",
    )
    s3.list_objects_v2(Bucket="coach-snippets", MaxKeys=1)  # its own bucket: allowed
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.create_bucket(Bucket="planted-by-the-app")


def test_exporters_read_with_their_own_users(smoke: SmokeStack) -> None:
    prometheus = httpx.Client(base_url=smoke.prometheus_url, timeout=10)

    def up(metric: str) -> bool:
        result = prometheus.get("/api/v1/query", params={"query": metric}).json()["data"]
        return [s["value"][1] for s in result["result"]] == ["1"]

    wait_until(lambda: up("pg_up") and up("redis_up"), seconds=90, what="pg_up and redis_up 1")
    memory = prometheus.get("/api/v1/query", params={"query": "redis_memory_used_bytes"}).json()
    assert memory["data"]["result"], "the exporter's user reads INFO"


def test_prometheus_lifecycle_api_is_off(smoke: SmokeStack) -> None:
    with httpx.Client(base_url=smoke.prometheus_url, timeout=10) as prometheus:
        assert prometheus.post("/-/reload").status_code == 403
        assert prometheus.post("/-/quit").status_code == 403
        assert prometheus.get("/-/ready").status_code == 200


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("backend", {"postgres_app_password", "redis_password", "qdrant_api_key",
                     "minio_app_password", "llm_api_key"}),
        ("celery-beat", {"redis_password"}),
        ("redis", {"redis_acl", "redis_exporter_password"}),
    ],
)  # fmt: skip
def test_containers_hold_only_their_secrets(
    smoke: SmokeStack, service: str, expected: set[str]
) -> None:
    listed = smoke.project.run(
        "exec", "-T", service, "ls", "/run/secrets", capture=True, quiet=True
    ).stdout.split()
    assert set(listed) == expected
