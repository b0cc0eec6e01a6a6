"""Least privilege against real servers: the PostgreSQL roles the migrate step keeps
(coach/dbroles.py), including on a database made before them, and Redis' ACL file as
`invoke secrets.generate` renders it."""

from __future__ import annotations

import asyncio
import secrets as random
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from pydantic import SecretStr

from coach.migrate import current_revision, head_revision, migrate
from coach.settings import Settings
from ops.stack import secrets
from tests.support.containers import container, running, wait_for_postgres

SUPERUSER = "coach"


def _settings(
    port: int, password: str, tmp_path: Path, user: str = SUPERUSER, **roles: str
) -> Settings:
    """Connected as `user`; `roles`: postgres_app_password and the like (the migrate step's)."""
    values: dict[str, Any] = {
        k: SecretStr(v) if k.endswith("password") else v for k, v in roles.items()
    }
    return Settings(
        postgres_host="127.0.0.1",
        postgres_port=port,
        postgres_user=user,
        postgres_password=SecretStr(password),
        data_dir=tmp_path,
        **values,
    )


def _dsn(port: int, user: str, password: str) -> str:
    return f"host=127.0.0.1 port={port} user={user} dbname=coach password={password}"


def _refused(conn: psycopg.Connection, sql: str) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as failed:
        conn.execute(sql)
    return str(failed.value)


def test_app_role_changes_rows_only_and_roles_survive_an_upgrade(tmp_path: Path) -> None:
    password, app_pw, exporter_pw = (random.token_urlsafe(16) for _ in range(3))
    pg = (
        container("POSTGRES_IMAGE")
        .with_env("POSTGRES_USER", SUPERUSER)
        .with_env("POSTGRES_PASSWORD", password)
        .with_exposed_ports(5432)
    )
    with running(pg):
        port = int(pg.get_exposed_port(5432))
        wait_for_postgres(_dsn(port, SUPERUSER, password))
        # A database as main left it: migrated by the superuser, which owns every table.
        legacy = _settings(port, password, tmp_path)
        asyncio.run(migrate(legacy, to="0001"))
        with psycopg.connect(_dsn(port, SUPERUSER, password), autocommit=True) as su:
            su.execute(
                "INSERT INTO snippets (id, title, language, object_key, sha256, size_bytes, "
                "status, chunk_count, created_at, updated_at) SELECT gen_random_uuid(), 'old.py', "
                "'python', 'k', repeat('0', 64), 1, 'indexed', 0, now(), now()"
            )

        managed = _settings(
            port, password, tmp_path, postgres_app_password=app_pw,
            postgres_exporter_password=exporter_pw,
        )  # fmt: skip
        # The next migrate makes the roles, hands the tables over and migrates as the owner.
        assert asyncio.run(migrate(managed)) == ("0001", head_revision())
        assert asyncio.run(migrate(managed)) == (head_revision(), head_revision())  # idempotent

        with psycopg.connect(_dsn(port, SUPERUSER, password)) as su:
            owners: dict[str, str] = dict(
                su.execute(
                    "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"
                ).fetchall()
            )
            attrs = su.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles "
                "WHERE rolname = 'coach_app'"
            ).fetchone()
        assert set(owners.values()) == {"coach_owner"}, owners
        assert {"snippets", "alembic_version"} <= owners.keys()
        assert attrs == (False, False, False, True)

        app = _settings(port, app_pw, tmp_path, user="coach_app")
        assert asyncio.run(current_revision(app)) == head_revision()  # what the backend checks
        with psycopg.connect(_dsn(port, "coach_app", app_pw), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM snippets").fetchone() == (1,)
            conn.execute("UPDATE snippets SET title = 'renamed.py'")
            assert "permission denied" in _refused(conn, "CREATE ROLE intruder SUPERUSER")
            assert "pg_execute_server_program" in _refused(conn, "COPY (SELECT 1) TO PROGRAM 'id'")
            assert "must be owner" in _refused(conn, "DROP TABLE snippets")
            _refused(conn, "CREATE TABLE planted (x int)")
            _refused(conn, "TRUNCATE snippets")
            _refused(conn, "UPDATE alembic_version SET version_num = '0001'")
            conn.execute("DELETE FROM snippets")

        with psycopg.connect(_dsn(port, "coach_exporter", exporter_pw), autocommit=True) as exp:
            # pg_monitor: every session's activity and the statistics, no table of the app.
            sessions = exp.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
            assert sessions is not None and sessions[0] >= 1
            _refused(exp, "SELECT count(*) FROM snippets")

        # A rotated password takes effect on the next migrate; the old one stops working.
        rotated = random.token_urlsafe(16)
        asyncio.run(migrate(_settings(port, password, tmp_path, postgres_app_password=rotated)))
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(_dsn(port, "coach_app", app_pw)).close()
        psycopg.connect(_dsn(port, "coach_app", rotated)).close()


def test_role_settings_refuse_the_superuser_as_the_app(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="four different roles"):
        _settings(5432, "x", tmp_path, postgres_app_password="y", postgres_app_user=SUPERUSER)


def test_redis_acl_app_user_cannot_reconfigure_or_flush(tmp_path: Path) -> None:
    app_pw, exporter_pw = random.token_urlsafe(16), random.token_urlsafe(16)
    acl = tmp_path / "redis_users.acl"
    acl.write_text(secrets.redis_acl(app_pw, exporter_pw))
    acl.chmod(0o644)
    tmp_path.chmod(0o755)
    server = (
        container("REDIS_IMAGE")
        .with_volume_mapping(str(acl), "/run/secrets/redis_acl", "ro")
        .with_command("redis-server --aclfile /run/secrets/redis_acl")
        .with_exposed_ports(6379)
    )
    with running(server):
        port = int(server.get_exposed_port(6379))
        app = redis.Redis(port=port, username="app", password=app_pw, socket_timeout=5)
        _wait_ping(app)
        # What Celery, kombu and the beat lock use.
        app.lpush("coach", "task")
        assert app.brpop(["coach"], timeout=1) == (b"coach", b"task")
        with app.pipeline(transaction=True) as multi:
            multi.set("k", "v")
            multi.expire("k", 60)
            multi.execute()
        assert app.eval("return redis.call('GET', KEYS[1])", 1, "k") == b"v"
        assert app.publish("celeryev", "x") == 0  # allowed; nobody listens
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.config_set("maxmemory", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.keys("*")
        assert app.get("k") == b"v"

        anonymous = redis.Redis(port=port, socket_timeout=5)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.get("k")
        exporter = redis.Redis(port=port, username="exporter", password=exporter_pw)
        assert exporter.ping() and "used_memory" in exporter.info("memory")
        assert exporter.config_get("maxmemory")
        with pytest.raises(redis.exceptions.NoPermissionError):
            exporter.get("k")


def _wait_ping(client: redis.Redis) -> None:
    from tests.support.processes import wait_until  # noqa: PLC0415

    def answers() -> bool:
        try:
            return bool(client.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
            return False

    wait_until(answers, seconds=30, what="redis answering")
