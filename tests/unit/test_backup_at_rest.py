"""Backups at rest, without Docker: the real backup writer (pg_dump stood in for by a shell
command, objects in a local store) makes only 0700 directories and 0600 files whatever the
umask; its off-site copy (obstore's LocalStore standing in for the S3 bucket, same code path) is
encrypted to an age key, read back object by object, and fetched back only with the identity."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import obstore
import pyrage
import pytest
from obstore.store import LocalStore, ObjectStore

from coach.objects import ObjectStore as AppObjects
from ops.data import backup as backups
from ops.data import offsite, postgres
from ops.data.manifest import DUMP, MANIFEST, verify
from ops.data.offsite import Destination, OffsiteError
from ops.data.private import private_open
from ops.data.target import ContainerTarget, settings_from_env
from ops.errors import OpsError
from ops.settings import OpsSettings
from tests.unit.test_backup_tools import FakeSnapshot

SECRET = b"def password():\n    return 'hunter2'\n"
DUMP_BYTES = b"PGDMP" + bytes(range(256)) * 64


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ContainerTarget:
    """A target whose pg_dump is a local command writing DUMP_BYTES through the real dump()."""
    dump_file = tmp_path / "dump.bin"
    dump_file.write_bytes(DUMP_BYTES)
    monkeypatch.setattr(postgres, "Snapshot", FakeSnapshot)
    monkeypatch.setattr(postgres, "exec_argv", lambda *_, **__: ["cat", str(dump_file)])
    monkeypatch.setattr(postgres, "tool_version", lambda *_: "pg_dump (PostgreSQL) 17.7")
    env = {"DATA_DIR": str(tmp_path / "data")}
    store = AppObjects(settings_from_env(env))
    asyncio.run(store.put("snippets/a", SECRET))
    asyncio.run(store.put("snippets/b", b"print('b')\n"))
    return ContainerTarget("c0ffee", env)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask there is: nothing the writer does may rely on it."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The off-site bucket: a LocalStore per backup prefix, in place of S3Store."""
    bucket = tmp_path / "bucket"

    def store(self: Destination, name: str) -> ObjectStore:
        return LocalStore(bucket / self.prefix / name, mkdir=True)

    monkeypatch.setattr(Destination, "store", store)
    return bucket


def modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root.parent)): stat.S_IMODE(p.stat().st_mode)
        for p in [root, *root.rglob("*")]
    }


def test_every_directory_is_0700_and_every_file_0600_whatever_the_umask(
    target: ContainerTarget, tmp_path: Path, open_umask: None
) -> None:
    root = tmp_path / "backups"
    root.mkdir(mode=0o755)
    (root / ".lock").write_bytes(b"")  # left by an older version: world-readable
    (root / ".lock").chmod(0o644)

    made = backups.backup(target, root)

    found = modes(root)
    # An existing root may be a mount or read by an off-site sync account: left as it was.
    assert found.pop("backups") == 0o755
    assert {"backups/.lock", f"backups/{made.path.name}/{MANIFEST}"} <= set(found)
    assert f"backups/{made.path.name}/objects/snippets/a" in found
    loose = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o700 if (tmp_path / name).is_dir() else 0o600)
    }
    assert loose == {}
    assert (made.path / DUMP).read_bytes() == DUMP_BYTES
    assert verify(made.path).object_files().keys() == {"snippets/a", "snippets/b"}


def test_private_open_tightens_a_file_that_existed_before_writing(
    tmp_path: Path, open_umask: None
) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    path.chmod(0o666)
    with private_open(path) as out:
        assert stat.S_IMODE(os.fstat(out.fileno()).st_mode) == 0o600, "before the first byte"
        out.write(b"new")
    assert path.read_bytes() == b"new"


def _destination(*recipients: str) -> Destination:
    return Destination(bucket="coach-backups", prefix="nightly", recipients=recipients)


def _identity_file(tmp_path: Path, identity: pyrage.x25519.Identity, name: str) -> Path:
    path = tmp_path / name
    path.write_text(f"# created: by the test\n# public key: {identity.to_public()}\n{identity}\n")
    return path


def test_an_encrypted_offsite_copy_restores_with_the_identity_and_not_without(
    target: ContainerTarget, tmp_path: Path, remote: Path
) -> None:
    identity = pyrage.x25519.Identity.generate()
    destination = _destination(str(identity.to_public()))
    made = backups.backup(target, tmp_path / "backups", offsite_to=destination)
    name = made.path.name
    assert made.uploaded == f"s3://coach-backups/nightly/{name}/"

    copy = remote / "nightly" / name
    sent = {str(p.relative_to(copy)): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    assert set(sent) == {f"{f}.age" for f in [*made.manifest.files, MANIFEST]}
    for plain_name, entry in made.manifest.files.items():
        body = sent[f"{plain_name}.age"]
        assert body.startswith(b"age-encryption.org/v1\n")
        assert hashlib.sha256(body).hexdigest() != entry.sha256, "not the plaintext"
    assert not any(SECRET in body or b"hunter2" in body for body in sent.values())
    record = json.loads((made.path / offsite.RECORD).read_text())
    assert record["encrypted_to"] == [str(identity.to_public())]
    assert {k: v["sha256"] for k, v in record["objects"].items()} == {
        k: hashlib.sha256(v).hexdigest() for k, v in sent.items()
    }, "the ciphertext's sha256, as read back"

    elsewhere = tmp_path / "restore-host"
    with pytest.raises(OffsiteError, match="is encrypted \\(age\\) and no identity was given"):
        backups.fetch(elsewhere, name, destination, None)
    stranger = _identity_file(tmp_path, pyrage.x25519.Identity.generate(), "stranger.txt")
    with pytest.raises(OffsiteError, match=f"{MANIFEST}.age: cannot decrypt"):
        backups.fetch(elsewhere, name, destination, stranger)
    assert sorted(p.name for p in elsewhere.iterdir()) == [".lock"], "nothing half-fetched"

    fetched = backups.fetch(elsewhere, name, destination, _identity_file(tmp_path, identity, "k"))
    assert fetched == elsewhere / name
    assert verify(fetched) == made.manifest
    assert (fetched / "objects/snippets/a").read_bytes() == SECRET
    assert (fetched / DUMP).read_bytes() == DUMP_BYTES
    assert {m for p, m in modes(fetched).items() if (tmp_path / "restore-host" / p).is_file()} == {
        0o600
    }
    with pytest.raises(OpsError, match="exists already"):
        backups.fetch(elsewhere, name, destination, _identity_file(tmp_path, identity, "k"))


def test_an_object_read_back_different_fails_the_backup_naming_it(
    target: ContainerTarget, tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put = obstore.put

    def lossy_put(store: ObjectStore, key: str, body: Path) -> None:
        # A destination that keeps something else than it was sent (a proxy, a bad disk).
        put(store, key, body.read_bytes()[:-1] if key == "objects/snippets/b" else body)

    monkeypatch.setattr(obstore, "put", lossy_put)
    with pytest.raises(OffsiteError, match=r"nightly/\d{8}T\d{6}Z/objects/snippets/b: read back"):
        backups.backup(target, tmp_path / "backups", offsite_to=_destination())
    [made] = backups.complete_backups(tmp_path / "backups")
    assert not (made / offsite.RECORD).exists(), "no record of a copy that is not whole"


def test_a_plain_copy_cut_short_is_refused_and_one_whole_is_fetched(
    target: ContainerTarget, tmp_path: Path, remote: Path
) -> None:
    made = backups.backup(target, tmp_path / "backups", offsite_to=_destination())
    copy = remote / "nightly" / made.path.name
    assert (copy / "objects/snippets/a").read_bytes() == SECRET, "no recipient: plain"
    fetched = backups.fetch(tmp_path / "again", made.path.name, _destination(), None)
    assert verify(fetched) == made.manifest

    (copy / MANIFEST).unlink()
    with pytest.raises(OffsiteError, match="no manifest"):
        backups.fetch(tmp_path / "third", made.path.name, _destination(), None)
    with pytest.raises(OffsiteError, match="no backup '20200101T000000Z'"):
        backups.fetch(tmp_path / "third", "20200101T000000Z", _destination(), None)
    with pytest.raises(OpsError, match="not a backup name"):
        backups.fetch(tmp_path / "third", "../etc", _destination(), None)


def test_the_destination_has_credentials_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for app_key in ("S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(app_key, "the-app-s")
    secret = tmp_path / "offsite_secret"
    secret.write_text("offsite-secret\n")
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    settings = OpsSettings(
        offsite_url="s3://coach-backups/nightly",
        offsite_endpoint_url="https://backups.example:9000",
        offsite_access_key_id="backup-writer",
        offsite_secret_key_file=secret,
        backup_age_recipient=recipient,
    )
    destination = Destination.from_settings(settings)
    assert destination.recipients == (recipient,)
    config = destination.store("20250101T030000Z").config
    assert config["access_key_id"] == "backup-writer"
    assert config["secret_access_key"] == "offsite-secret"
    assert config["endpoint"] == "https://backups.example:9000"

    with pytest.raises(OffsiteError, match="no off-site destination"):
        Destination.from_settings(OpsSettings())
    with pytest.raises(OffsiteError, match="go together"):
        Destination.from_settings(settings.model_copy(update={"offsite_secret_key_file": None}))
    (tmp_path / "recipients").write_text(f"# ops team\n{recipient}\nage1typo\n")
    with pytest.raises(OffsiteError, match="not an age public key"):
        Destination.from_settings(
            settings.model_copy(update={"backup_age_recipients_file": tmp_path / "recipients"})
        )
    with pytest.raises(ValueError, match="backup_age_recipient"):
        OpsSettings(backup_age_recipient="AGE-SECRET-KEY-1QQQ")
    secret.write_text("")
    with pytest.raises(OffsiteError, match="is empty"):
        destination.store("20250101T030000Z")
