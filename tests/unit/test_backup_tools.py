"""The parts of backup and restore that need no running stack: manifest verification,
retention, what a failed backup leaves behind, Qdrant snapshot calls, and how a target finds
the app's settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from coach.migrate import head_revision
from ops.console import Reporter
from ops.data import backup as backups
from ops.data import postgres, qdrant
from ops.data import restore as restores
from ops.data.manifest import (
    DUMP,
    MANIFEST,
    BackupCorrupt,
    FileEntry,
    Manifest,
    object_path,
    verify,
)
from ops.data.target import ComposeTarget, ContainerTarget, Target, Writers, settings_from_env
from ops.data.tunnel import Tunnel, TunnelSpec
from ops.errors import CommandError, OpsError, TargetError
from ops.stack.project import Project


def write_backup(directory: Path, files: dict[str, bytes]) -> Manifest:
    import hashlib  # noqa: PLC0415

    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    manifest = Manifest(
        name=directory.name,
        created_at=datetime.now(UTC).isoformat(),
        app_version="0.1.0",
        alembic_revision="0001",
        tables={"snippets": 1, "chunks": 2, "questions": 0},
        objects={"count": 1, "bytes": 5, "store": "s3"},
        vectors={"mode": "local", "collection": None, "snapshot": None},
        tools={"pg_dump": "pg_dump (PostgreSQL) 17.7"},
        files={n: FileEntry(hashlib.sha256(d).hexdigest(), len(d)) for n, d in files.items()},
    )
    (directory / MANIFEST).write_text(manifest.dumps())
    return manifest


@pytest.fixture
def made(tmp_path: Path) -> Path:
    write_backup(
        tmp_path / "20250101T030000Z",
        {DUMP: b"PGDMP" + bytes(range(256)) * 4, "objects/snippets/a": b"print"},
    )
    return tmp_path / "20250101T030000Z"


def test_a_whole_backup_verifies(made: Path) -> None:
    manifest = verify(made)
    assert manifest.object_files() == {"snippets/a": "objects/snippets/a"}
    assert Manifest.loads(manifest.dumps()) == manifest


@pytest.mark.parametrize("name", [DUMP, "objects/snippets/a"])
def test_one_flipped_bit_anywhere_is_named(made: Path, name: str) -> None:
    data = bytearray((made / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (made / name).write_bytes(bytes(data))
    with pytest.raises(BackupCorrupt, match=rf"{made / name}: sha256 \w+ does not match"):
        verify(made)


def test_missing_truncated_and_escaping_files_are_refused(made: Path) -> None:
    (made / "objects/snippets/a").write_bytes(b"pri")
    with pytest.raises(BackupCorrupt, match="3 bytes, the manifest says 5"):
        verify(made)
    (made / "objects/snippets/a").unlink()
    with pytest.raises(BackupCorrupt, match="missing"):
        verify(made)
    data = json.loads((made / MANIFEST).read_text())
    data["files"] = {"../elsewhere": {"sha256": "0", "size": 1}, DUMP: data["files"][DUMP]}
    (made / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(BackupCorrupt, match="points outside the backup"):
        verify(made)
    (made / MANIFEST).write_text("{not json")
    with pytest.raises(BackupCorrupt, match="unreadable manifest"):
        verify(made)


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../up", "a/../../b", "a//b", "./a"])
def test_object_keys_that_could_escape_are_refused(key: str) -> None:
    with pytest.raises(OpsError, match="cannot be stored safely"):
        object_path(key)


def test_a_restore_migrates_older_schemas_and_refuses_unknown_ones() -> None:
    assert not restores._needs_migration(head_revision())
    assert restores._needs_migration(None), "an empty schema is migrated after the restore"
    with pytest.raises(restores.RestoreRefused, match="revision 9999 is unknown to this code"):
        restores._needs_migration("9999")


def test_retention_keeps_what_either_rule_keeps(tmp_path: Path) -> None:
    now = datetime(2025, 1, 31, 3, 0, tzinfo=UTC)
    paths = [
        tmp_path / (now - timedelta(days=age)).strftime(backups.STAMP) for age in (0, 1, 2, 10, 40)
    ]
    paths.append(tmp_path / f"{(now - timedelta(days=3)).strftime(backups.STAMP)}-pre-restore")

    def gone(**rules: Any) -> list[str]:
        return sorted(p.name for p in backups.expired(paths, now=now, **rules))

    assert gone(keep=None, keep_days=None) == []
    assert gone(keep=2, keep_days=None) == sorted(p.name for p in paths[2:5]), (
        "the safety copy is not counted, and is among the newest few kept apart"
    )
    assert gone(keep=None, keep_days=5) == sorted(p.name for p in paths[3:5])
    assert gone(keep=4, keep_days=5) == [paths[4].name], "kept if either rule keeps it"


def test_safety_copies_of_failed_restores_never_push_good_backups_out_of_keep(
    tmp_path: Path,
) -> None:
    """Four good backups, then three restores that failed after their safety backup: `--keep 2`
    leaves the two newest good backups; the safety copies go by their own rule (the
    SAFETY_KEEP newest stay, so the oldest of the three goes)."""
    good = [f"2025012{day}T030000Z" for day in (1, 2, 3, 4)]
    safety = [f"20250130T0{hour}0000Z-{backups.SAFETY_LABEL}" for hour in (1, 2, 3)]
    for name in good + safety:
        write_backup(tmp_path / name, {DUMP: b"x"})

    removed = backups.apply_retention(tmp_path, keep=2, keep_days=None, reporter=Reporter())

    assert sorted(p.name for p in removed) == sorted([*good[:2], safety[0]])
    assert [p.name for p in backups.complete_backups(tmp_path)] == good[2:] + safety[1:]
    assert backups.SAFETY_KEEP == 2


def test_keep_days_keeps_recent_safety_copies_beyond_the_newest_few(tmp_path: Path) -> None:
    now = datetime(2025, 1, 31, 3, 0, tzinfo=UTC)
    safety = [
        tmp_path / f"{(now - timedelta(days=age)).strftime(backups.STAMP)}-pre-restore"
        for age in (0, 1, 2, 10)
    ]
    gone = backups.expired(safety, keep=1, keep_days=5, now=now)
    assert gone == [safety[3]], "newer than --keep-days stays; older beyond the newest two goes"


def test_retention_removes_only_whole_backups(tmp_path: Path) -> None:
    for name in ("20250101T000000Z", "20250102T000000Z", "20250103T000000Z"):
        write_backup(tmp_path / name, {DUMP: b"x"})
    (tmp_path / "20250104T000000Z.partial").mkdir()
    (tmp_path / "notes").mkdir()
    removed = backups.apply_retention(tmp_path, keep=1, keep_days=None, reporter=Reporter())
    assert [p.name for p in removed] == ["20250102T000000Z", "20250101T000000Z"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "20250103T000000Z",
        "20250104T000000Z.partial",
        "notes",
    ]


class FakeSnapshot:
    id = "00000003-00000002-1"

    def __init__(self, _target: object) -> None:
        pass

    def __enter__(self) -> FakeSnapshot:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def query(self, sql: str) -> str:
        return {"SELECT version_num FROM alembic_version": "0001", "SHOW server_version": "17"}.get(
            sql, "1|2|3"
        )


def test_a_backup_failing_midway_leaves_nothing_that_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_dump(_target: object, path: Path, **_: object) -> str:
        path.write_bytes(b"PGDMP")
        return "0" * 64

    async def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(postgres, "Snapshot", FakeSnapshot)
    monkeypatch.setattr(postgres, "dump", fake_dump)
    monkeypatch.setattr(backups, "_download_objects", disk_full)
    target = ContainerTarget(
        "c0ffee", {"DATA_DIR": str(tmp_path / "data"), "POSTGRES_HOST": "postgres"}
    )
    with pytest.raises(OSError, match="No space left"):
        backups.backup(target, tmp_path / "backups")
    assert [p.name for p in (tmp_path / "backups").iterdir()] == [".lock"]
    with pytest.raises(OpsError, match="at least 1"):
        backups.backup(target, tmp_path / "backups", keep=0)


def test_qdrant_snapshot_is_created_downloaded_then_deleted(tmp_path: Path) -> None:
    calls: list[tuple[str, str, dict[str, str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path, dict(request.url.params)))
        assert request.headers["api-key"] == "k"
        if request.method == "POST" and request.url.path.endswith("/snapshots"):
            return httpx.Response(200, json={"result": {"name": "c-1.snapshot", "size": 3}})
        if request.method == "GET":
            return httpx.Response(200, content=b"TAR")
        return httpx.Response(200, json={"result": True})

    http = httpx.Client(
        base_url="http://qdrant:6333",
        headers={"api-key": "k"},
        transport=httpx.MockTransport(handler),
    )
    sizes: list[int] = []
    info = qdrant.snapshot(http, "c", tmp_path / "c.snapshot", sizes.append)
    assert info["name"] == "c-1.snapshot" and (tmp_path / "c.snapshot").read_bytes() == b"TAR"
    assert sizes == [3]
    qdrant.recover(http, "c2", tmp_path / "c.snapshot")
    assert calls == [
        ("POST", "/collections/c/snapshots", {"wait": "true"}),
        ("GET", "/collections/c/snapshots/c-1.snapshot", {}),
        ("DELETE", "/collections/c/snapshots/c-1.snapshot", {"wait": "true"}),
        ("POST", "/collections/c2/snapshots/upload", {"priority": "snapshot", "wait": "true"}),
    ]
    assert qdrant.same_minor("1.16.3", "1.16.0") and not qdrant.same_minor("1.16.3", "1.15.9")


def test_settings_come_from_the_given_variables_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://from-my-shell:9000")
    (tmp_path / "pw").write_text("s3cret\n")
    settings = settings_from_env(
        {"POSTGRES_HOST": "db", "POSTGRES_PASSWORD_FILE": str(tmp_path / "pw"), "APP_VERSION": "9"}
    )
    assert settings.postgres_host == "db" and settings.s3_endpoint_url is None
    assert settings.postgres_password.get_secret_value() == "s3cret" and settings.version == "9"
    with pytest.raises(TargetError, match="QDRANT_API_KEY_FILE"):
        settings_from_env({"QDRANT_API_KEY_FILE": str(tmp_path / "missing")})


class FakeProject:
    """What ComposeTarget asks of a compose project: its config and its containers."""

    name = "coach-test"

    def __init__(self, config: dict[str, Any], ps: list[dict[str, Any]]) -> None:
        self._config, self._ps = config, ps

    def config(self) -> dict[str, Any]:
        return self._config

    def ps(self) -> list[dict[str, Any]]:
        return self._ps


@pytest.fixture
def compose_config(tmp_path: Path) -> Iterator[dict[str, Any]]:
    (tmp_path / "pg").write_text("pg-pass\n")
    (tmp_path / "minio").write_text("minio-pass\n")
    yield {
        "services": {
            "backend": {
                "labels": {"coach.role": "writer", "coach.settings": "true"},
                "environment": {
                    "POSTGRES_HOST": "postgres",
                    "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
                    "REDIS_HOST": "redis",
                    "QDRANT_URL": "http://qdrant:6333",
                    "S3_ENDPOINT_URL": "http://minio:9000",
                    "S3_ACCESS_KEY_ID": "coach",
                    "S3_SECRET_ACCESS_KEY_FILE": "/run/secrets/minio_root_password",
                },
            },
            "postgres": {
                "labels": {"coach.role": "data", "coach.store": "database"},
                "environment": {"POSTGRES_USER": "coach", "POSTGRES_DB": "coach"},
            },
            "qdrant": {"labels": {"coach.role": "data", "coach.store": "vectors"}},
            "minio": {"labels": {"coach.role": "data", "coach.store": "objects"}},
        },
        "secrets": {
            "postgres_password": {"file": str(tmp_path / "pg")},
            "minio_root_password": {"file": str(tmp_path / "minio")},
        },
    }


def published(service: str, target: int, port: int) -> dict[str, Any]:
    return {
        "Service": service,
        "State": "running",
        "Publishers": [{"URL": "127.0.0.1", "TargetPort": target, "PublishedPort": port}],
    }


def test_compose_target_reaches_the_published_ports_with_the_secret_files(
    compose_config: dict[str, Any],
) -> None:
    ps = [published("postgres", 5432, 15432), published("qdrant", 6333, 16333)]
    ps.append(published("minio", 9000, 19000))
    project = cast(Project, FakeProject(compose_config, ps))
    target = ComposeTarget(project, overrides={})
    settings = target.settings()
    assert (settings.postgres_host, settings.postgres_port) == ("127.0.0.1", 15432)
    assert settings.qdrant_url == "http://127.0.0.1:16333"
    assert settings.s3_endpoint_url == "http://127.0.0.1:19000"
    assert settings.postgres_password.get_secret_value() == "pg-pass"
    assert settings.s3_secret_access_key.get_secret_value() == "minio-pass"
    assert settings.redis_host is None
    assert (target.db_user, target.db_name) == ("coach", "coach")


def test_compose_target_tunnels_to_what_publishes_no_port_and_closes_them(
    compose_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose_config["services"]
    services["backend"] |= {"image": "coach/app:1.2", "networks": {"app": None, "edge": None}}
    for name in ("postgres", "qdrant", "minio"):
        services[name]["networks"] = {"app": None}
    compose_config["networks"] = {"app": {"name": "coach-test_app", "internal": True}}
    opened: list[TunnelSpec] = []
    closed: list[str] = []

    @contextmanager
    def tunnel(spec: TunnelSpec) -> Iterator[Tunnel]:
        opened.append(spec)
        yield Tunnel(f"c-{spec.service}", 40000 + len(opened))
        closed.append(spec.service)

    monkeypatch.setattr("ops.data.target.open_tunnel", tunnel)
    monkeypatch.setattr("ops.data.target.atexit.register", lambda _f: None)
    # Development publishes PostgreSQL only here: the other two through tunnels.
    project = cast(Project, FakeProject(compose_config, [published("postgres", 5432, 15432)]))
    target = ComposeTarget(project, overrides={})
    settings = target.settings()
    assert (settings.postgres_host, settings.postgres_port) == ("127.0.0.1", 15432)
    assert settings.qdrant_url == "http://127.0.0.1:40001"
    assert settings.s3_endpoint_url == "http://127.0.0.1:40002"
    assert [(s.service, s.host, s.port) for s in opened] == [
        ("qdrant", "qdrant", 6333),
        ("minio", "minio", 9000),
    ]
    assert {(s.project, s.network, s.image) for s in opened} == {
        ("coach-test", "coach-test_app", "coach/app:1.2")
    }
    target.settings()  # asked again (restore, its safety backup): the same tunnels
    assert len(opened) == 2 and not closed
    target.close()
    assert sorted(closed) == ["minio", "qdrant"]
    # Production: nothing published, PostgreSQL too (reindex and migrations speak TCP to it).
    opened.clear()
    with closing(ComposeTarget(cast(Project, FakeProject(compose_config, [])), overrides={})) as t:
        assert t.settings().postgres_port == 40001
    assert [s.service for s in opened] == ["postgres", "qdrant", "minio"]
    # COACH_TARGET_* (a remote stack) wins: no tunnel at all.
    opened.clear()
    project = cast(Project, FakeProject(compose_config, []))
    tunnels = {
        "POSTGRES_PORT": "6543",
        "QDRANT_URL": "http://127.0.0.1:7333",
        "S3_ENDPOINT_URL": "http://127.0.0.1:7000",
    }
    settings = ComposeTarget(project, overrides=tunnels).settings()
    assert (settings.postgres_host, settings.postgres_port) == ("127.0.0.1", 6543)
    assert settings.qdrant_url == "http://127.0.0.1:7333"
    assert settings.s3_endpoint_url == "http://127.0.0.1:7000"
    assert settings.postgres_password.get_secret_value() == "pg-pass", "still the stack's secret"
    assert opened == []


def test_compose_target_on_local_stores_needs_them_on_a_volume(
    compose_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = compose_config["services"]["backend"]
    backend["environment"] |= {
        "QDRANT_URL": "",
        "S3_ENDPOINT_URL": "",
        "DATA_DIR": "/var/lib/coach",
    }
    project = cast(Project, FakeProject(compose_config, [published("postgres", 5432, 15432)]))
    with pytest.raises(TargetError, match="DATA_DIR=/var/lib/coach"):
        ComposeTarget(project, overrides={}).settings()
    backend["volumes"] = [{"type": "volume", "source": "local-stores", "target": "/var/lib/coach"}]
    compose_config["volumes"] = {"local-stores": {"name": "coach-test_local-stores"}}
    asked: list[list[str]] = []

    def docker(argv: list[str], **_: object) -> Any:
        asked.append(argv)
        return type("Done", (), {"stdout": f"{tmp_path}\n"})()

    monkeypatch.setattr("ops.data.target.run", docker)
    settings = ComposeTarget(project, overrides={}).settings()
    assert settings.data_dir == tmp_path and settings.qdrant_url is None
    assert asked == [
        ["docker", "volume", "inspect", "--format", "{{.Mountpoint}}", "coach-test_local-stores"]
    ]


def test_a_restore_asks_first_and_always_brings_the_writers_back(
    made: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def stop() -> list[str]:
        calls.append("stop")
        return ["backend", "worker"]

    def start(stopped: list[str]) -> None:
        calls.append(f"start {' '.join(stopped)}")

    def pg_restore_fails(*_: object, **__: object) -> None:
        raise CommandError(["pg_restore"], 1, "pg_restore: error: could not execute query")

    monkeypatch.setattr(postgres, "check_archive", lambda *_: None)
    monkeypatch.setattr(postgres, "restore", pg_restore_fails)
    target = ContainerTarget(
        "c0ffee",
        {"DATA_DIR": str(tmp_path / "data"), "POSTGRES_HOST": "postgres"},
        Writers(stop, start),
    )
    questions: list[str] = []

    def decline(question: str) -> bool:
        questions.append(question)
        return False

    for confirm in (None, decline):
        with pytest.raises(restores.RestoreRefused, match="pass --yes"):
            restores.restore(target, made, confirm=confirm, safety_backup=False)
    assert "with backup 20250101T030000Z" in questions[0] and calls == []

    without_writers = ContainerTarget(
        "c0ffee", {"DATA_DIR": str(tmp_path / "data"), "POSTGRES_HOST": "postgres"}
    )
    with pytest.raises(restores.RestoreRefused, match="no way to stop the writers"):
        restores.restore(without_writers, made, yes=True, safety_backup=False)
    # Settings naming no PostgreSQL would migrate a local SQLite file after the restore.
    no_database = ContainerTarget(
        "c0ffee", {"DATA_DIR": str(tmp_path / "data")}, Writers(stop, start)
    )
    with pytest.raises(restores.RestoreRefused, match="name no PostgreSQL"):
        restores.restore(no_database, made, yes=True, safety_backup=False)
    assert calls == [], "refused before the writers stop"

    dropped: list[str] = []
    monkeypatch.setattr(postgres, "drop_restoring", lambda _target: dropped.append("restoring"))
    with pytest.raises(restores.RestoreFailed, match="could not execute query") as failed:
        restores.restore(target, made, yes=True, safety_backup=False, backups_root=tmp_path)
    assert calls == ["stop"], "a failed restore leaves the writers stopped"
    assert isinstance(failed.value.__cause__, CommandError) and dropped == ["restoring"]
    assert failed.value.hint is not None and "no safety backup was taken" in failed.value.hint
    assert failed.value.start_command == "start the writers again: backend, worker"


def test_a_restore_stops_the_writers_before_its_safety_backup_and_holds_the_lock(
    made: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order: writers stopped, then the safety backup (under the restore's own lock: a
    backup started meanwhile is refused), then pg_restore; a failure after that leaves the
    writers stopped and names the command that puts the safety backup back."""
    root = tmp_path / "backups"
    steps: list[str] = []

    def stop() -> list[str]:
        steps.append("stop")
        return ["backend"]

    def safety(target: object, into: Path, **options: Any) -> backups.BackupResult:
        assert options["lock"] is False and options["label"] == backups.SAFETY_LABEL
        with pytest.raises(OpsError, match="another backup is writing"), backups.locked(into):
            pass
        steps.append("safety backup")
        return backups.BackupResult(into / "20250102T000000Z-pre-restore", cast(Any, None), 1, 1)

    def pg_restore(*_: object, **__: object) -> None:
        steps.append("pg_restore")
        raise CommandError(["pg_restore"], 1, "pg_restore: error: out of disk")

    monkeypatch.setattr(postgres, "check_archive", lambda *_: 3)
    monkeypatch.setattr(postgres, "restore", pg_restore)
    monkeypatch.setattr(postgres, "drop_restoring", lambda _target: None)
    monkeypatch.setattr(restores, "backup", safety)
    target = ContainerTarget(
        "c0ffee",
        {"DATA_DIR": str(tmp_path / "data"), "POSTGRES_HOST": "postgres"},
        Writers(stop, lambda stopped: steps.append("start")),
    )
    recovery = restores.Recovery(lambda path: f"restore {path.name}", lambda s: f"start {s}")
    events: list[tuple[str, dict[str, Any]]] = []

    class Recording(Reporter):
        def event(self, event: str, message: str = "", **fields: Any) -> None:
            events.append((event, fields))

    with pytest.raises(restores.RestoreFailed, match="out of disk") as failed:
        restores.restore(
            target, made, yes=True, backups_root=root, recovery=recovery, reporter=Recording()
        )
    assert steps == ["stop", "safety backup", "pg_restore"], "no start: the stores are mixed"
    again = "restore 20250102T000000Z-pre-restore"
    assert failed.value.restore_command == again
    assert failed.value.start_command == "start ['backend']"
    assert failed.value.hint == (
        f"put the state before the restore back: `{again}`; then start the writers: "
        "`start ['backend']`"
    )
    # Printed as soon as the safety backup exists (a killed restore prints nothing later), and
    # again with the failure.
    recoveries = [f for e, f in events if e in {"recovery", "restore-failed"}]
    assert [f["restore_command"] for f in recoveries] == [again, again]
    with backups.locked(root):
        pass  # released at the end


def test_a_dry_run_takes_no_lock_and_creates_nothing(
    made: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "check_archive", lambda *_: 3)
    monkeypatch.setattr(postgres, "counts", lambda _t: {"snippets": 2, "chunks": 4, "questions": 1})
    monkeypatch.setattr(postgres, "restore", lambda *_a, **_k: pytest.fail("pg_restore ran"))
    calls: list[str] = []

    def stop() -> list[str]:
        calls.append("stop")
        return []

    target = ContainerTarget(
        "c0ffee",
        {"DATA_DIR": str(tmp_path / "data"), "POSTGRES_HOST": "postgres"},
        Writers(stop, lambda _s: calls.append("start")),
    )
    root = tmp_path / "backups"
    dry = restores.restore(target, made, dry_run=True, backups_root=root)
    assert dry.checks == [] and calls == [] and not root.exists()


def test_the_objects_of_the_backup_are_written_before_any_other_is_deleted(
    made: Path, tmp_path: Path
) -> None:
    """A restore failing midway through the objects leaves every object the backup has and
    deletes nothing yet."""
    import asyncio  # noqa: PLC0415

    from coach.objects import ObjectStore  # noqa: PLC0415

    settings = settings_from_env({"DATA_DIR": str(tmp_path / "data")})
    store = ObjectStore(settings)
    asyncio.run(store.put("snippets/extra", b"not in the backup"))
    manifest = verify(made)
    (made / "objects/snippets/a").write_bytes(b"changed")  # after verification
    with pytest.raises(OpsError, match="changed after verification"):
        asyncio.run(restores._restore_objects(settings, manifest, made, Reporter()))
    assert asyncio.run(store.keys()) == ["snippets/extra"], "nothing deleted before all are in"
    (made / "objects/snippets/a").write_bytes(b"print")
    assert asyncio.run(restores._restore_objects(settings, manifest, made, Reporter())) == (1, 1)
    assert asyncio.run(store.keys()) == ["snippets/a"]


def test_the_recovery_commands_repeat_how_the_restore_was_invoked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ops.cli import data  # noqa: PLC0415

    safety = tmp_path / "20250102T000000Z-pre-restore"
    monkeypatch.setattr("sys.argv", ["invoke"])
    prod = data._recovery(data.RESTORE.parse(["--prod", "--backup", "x", "--yes"]))
    assert prod.restore(safety) == (
        f"./run invoke restore --prod --backup {safety} --yes --no-safety-backup"
    )
    assert prod.start(["backend"]) == "./run invoke up --no-build --prod"

    monkeypatch.setattr("sys.argv", ["scripts/restore.py"])
    args = ["--postgres-container", "c0ffee", "--stop-cmd", "systemctl stop coach"]
    args += ["--start-cmd", "systemctl start coach", "--backups-dir", str(tmp_path)]
    bare = data._recovery(data.RESTORE.parse([*args, "--backup", "x"]))
    assert bare.restore(safety) == (
        "./run python scripts/restore.py --postgres-container c0ffee --stop-cmd "
        f"'systemctl stop coach' --start-cmd 'systemctl start coach' --backups-dir {tmp_path} "
        f"--backup {safety} --yes --no-safety-backup"
    )
    assert bare.start(["systemctl stop coach"]) == "systemctl start coach"


def test_a_database_name_too_long_to_restore_beside_is_refused_before_anything() -> None:
    """PostgreSQL cuts identifiers at 63 bytes: <db>_restoring of a 60-byte name would be
    the same name as <db>_replaced, whose DROP would then drop the restored database."""

    class LongName:
        db_name = "c" * 54

    with pytest.raises(TargetError, match="longer than 53 bytes"):
        postgres.restoring_name(cast(Target, LongName()))
    LongName.db_name = "c" * 53
    assert postgres.restoring_name(cast(Target, LongName())) == "c" * 53 + "_restoring"
