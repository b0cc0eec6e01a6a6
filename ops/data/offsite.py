"""Off-site copies of finished backups, and the way back.

A copy goes to s3://BUCKET/PREFIX/<backup name>/ with credentials of its own (COACH_OFFSITE_*,
the secret key in a file), never the app's: a leaked app key then cannot read or delete the
backups, nor the backup key the app's data. Every file of the backup is uploaded, the manifest
last (a copy cut short has none and is refused when fetched), then every object is read back
and its sha256 compared with what was sent: a mismatch fails the backup, naming the object.

With age recipients set, each file is encrypted before it leaves the host ("<file>.age"),
streamed through a 0600 scratch file, never whole in memory. The manifest's sha256 stay those
of the plaintext (what a restore verifies); the ciphertext's, which the read-back compares,
are recorded in the local backup's offsite.json. A fetch downloads, decrypts with the identity
file, and verifies every file against the manifest before anything may restore it.

Encryption is pyrage (age's Rust implementation, a wheel pinned in uv.lock) rather than
Debian's `age` binary: it comes with the tooling's own locked environment, so an air-gapped
host that installs the locked wheels needs no second package source, and it streams without a
subprocess. The format is age's: keys from `age-keygen` work, and `age -d -i key.txt` decrypts
an object by hand.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import obstore
import pyrage
from obstore.store import ObjectStore, S3Store

from ops.console import Reporter, human_size
from ops.data.manifest import (
    MANIFEST,
    BackupCorrupt,
    FileEntry,
    Manifest,
    sha256_file,
    verify,
)
from ops.data.private import private_dir, private_open, write_private
from ops.errors import OpsError
from ops.settings import OpsSettings

SEALED = ".age"
RECORD = "offsite.json"  # in the local backup: where its copy went and the ciphertext sha256


class OffsiteError(OpsError):
    """The off-site copy cannot be made, read back, or fetched as it was made."""


@dataclass(frozen=True)
class Destination:
    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_key_file: Path | None = None
    recipients: tuple[str, ...] = ()  # age public keys; none: the copy is plain

    @classmethod
    def from_settings(cls, settings: OpsSettings, url: str | None = None) -> Destination:
        url = url or settings.offsite_url
        if not url:
            raise OffsiteError(
                "no off-site destination",
                hint="set COACH_OFFSITE_URL=s3://BUCKET/PREFIX and its credentials "
                "(docs/operations.md, 'Off-site copies')",
            )
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise OffsiteError(f"off-site destination {url!r}: expected s3://BUCKET/PREFIX")
        key_id, secret = settings.offsite_access_key_id or None, settings.offsite_secret_key_file
        if bool(key_id) != bool(secret):
            raise OffsiteError(
                "COACH_OFFSITE_ACCESS_KEY_ID and COACH_OFFSITE_SECRET_KEY_FILE go together"
            )
        if secret:
            _read_secret(secret)  # now, not after an hour of backup
        return cls(
            bucket=parts.netloc,
            prefix=parts.path.strip("/"),
            endpoint_url=settings.offsite_endpoint_url or None,
            region=settings.offsite_region,
            access_key_id=key_id,
            secret_key_file=secret,
            recipients=recipients_of(settings),
        )

    def where(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._prefix(name)}/"

    def _prefix(self, name: str) -> str:
        return "/".join(p for p in (self.prefix, name) if p)

    def store(self, name: str) -> S3Store:
        """The off-site store, rooted at this backup's prefix."""
        options: dict[str, Any] = {"region": self.region}
        if self.endpoint_url:
            options |= {
                "endpoint": self.endpoint_url,
                "virtual_hosted_style_request": False,
                "client_options": {"allow_http": self.endpoint_url.startswith("http://")},
            }
        if self.access_key_id and self.secret_key_file:
            options |= {
                "access_key_id": self.access_key_id,
                "secret_access_key": _read_secret(self.secret_key_file),
            }
        return S3Store(self.bucket, prefix=self._prefix(name), **cast(Any, options))


def _read_secret(path: Path) -> str:
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise OffsiteError(f"COACH_OFFSITE_SECRET_KEY_FILE {path}: {exc.strerror}") from exc
    if not secret:
        raise OffsiteError(f"COACH_OFFSITE_SECRET_KEY_FILE {path} is empty")
    return secret


def _key_lines(path: Path, setting: str) -> list[str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise OffsiteError(f"{setting} {path}: {exc.strerror}") from exc
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def recipients_of(settings: OpsSettings) -> tuple[str, ...]:
    """Every age public key set (COACH_BACKUP_AGE_RECIPIENT, COACH_BACKUP_AGE_RECIPIENTS_FILE),
    each checked now: a typo must fail the backup, not make a copy nobody can open."""
    found = [settings.backup_age_recipient] if settings.backup_age_recipient else []
    if settings.backup_age_recipients_file:
        found += _key_lines(settings.backup_age_recipients_file, "COACH_BACKUP_AGE_RECIPIENTS_FILE")
    for key in found:
        _recipient(key)
    return tuple(dict.fromkeys(found))


def _recipient(key: str) -> pyrage.x25519.Recipient:
    try:
        return pyrage.x25519.Recipient.from_str(key)
    except pyrage.RecipientError as exc:
        raise OffsiteError(f"not an age public key (age1...): {key!r}") from exc


def identities(path: Path | None, where: str) -> list[pyrage.x25519.Identity]:
    """The identities of an age identity file (as age-keygen writes it)."""
    if path is None:
        raise OffsiteError(
            f"{where} is encrypted (age) and no identity was given",
            hint="set COACH_BACKUP_AGE_IDENTITY_FILE to the private key file that matches "
            "COACH_BACKUP_AGE_RECIPIENT (AGE-SECRET-KEY-1...)",
        )
    found = []
    for line in _key_lines(path, "COACH_BACKUP_AGE_IDENTITY_FILE"):
        try:
            found.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError as exc:
            raise OffsiteError(
                f"COACH_BACKUP_AGE_IDENTITY_FILE {path}: a line is not an age identity"
            ) from exc
    if not found:
        raise OffsiteError(f"COACH_BACKUP_AGE_IDENTITY_FILE {path}: no identity in it")
    return found


@dataclass(frozen=True)
class Uploaded:
    url: str
    encrypted: bool
    objects: dict[str, FileEntry]  # object name -> sha256 and size of what was sent


def upload(
    path: Path,
    manifest: Manifest,
    destination: Destination,
    scratch: Path,
    reporter: Reporter,
    *,
    store: ObjectStore | None = None,
) -> Uploaded:
    """Copy the finished backup at `path` off-site (encrypted when recipients are set), read
    every object back, then write the record (offsite.json). `scratch`: an empty private
    directory for the encrypted files, on the same disk as the backup."""
    store = store or destination.store(path.name)
    where = destination.where(path.name)
    recipients = [_recipient(key) for key in destination.recipients]
    verify(path)  # what leaves the host is the backup the manifest describes
    names = [*sorted(manifest.files), MANIFEST]  # the manifest last: a cut-short copy has none
    total = sum(e.size for e in manifest.files.values()) + (path / MANIFEST).stat().st_size
    sent: dict[str, FileEntry] = {}
    done = 0
    for name in names:
        body, key = path / name, name
        if recipients:
            body, key = scratch / "sealed", name + SEALED
            with (path / name).open("rb") as plain, private_open(body) as sealed:
                pyrage.encrypt_io(plain, sealed, recipients)
        # Plain copies are read back against the manifest's own sha256; sealed ones against
        # the ciphertext's (the plaintext's are checked again after decryption, on fetch).
        sent[key] = manifest.files.get(key) or FileEntry(sha256_file(body), body.stat().st_size)
        obstore.put(store, key, body)
        done += (path / name).stat().st_size
        reporter.progress(
            "upload",
            f"upload: {human_size(done)} of {human_size(total)}",
            completed=done,
            total=total,
            unit="bytes",
            bytes=done,
        )
    (scratch / "sealed").unlink(missing_ok=True)
    read_back(store, sent, where, reporter)
    uploaded = Uploaded(where, bool(recipients), sent)
    record = {
        "url": where,
        "encrypted_to": list(destination.recipients),
        "objects": {k: asdict(v) for k, v in sent.items()},
        "verified_at": datetime.now(UTC).isoformat(),
    }
    write_private(path / RECORD, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    reporter.progress(
        "upload",
        f"uploaded to {where} ({len(sent)} objects"
        + (", encrypted with age" if recipients else "")
        + "), every object read back and its sha256 matched",
        done=True,
        completed=done,
        total=total,
        unit="bytes",
        bytes=done,
        url=where,
        encrypted=bool(recipients),
    )
    return uploaded


def read_back(
    store: ObjectStore, sent: dict[str, FileEntry], where: str, reporter: Reporter
) -> None:
    """Read every object back from the store: its sha256 and size must be what was sent."""
    for index, (key, entry) in enumerate(sorted(sent.items()), 1):
        digest, size = hashlib.sha256(), 0
        for block in _stream(store, key, where):
            digest.update(block)
            size += len(block)
        if (digest.hexdigest(), size) != (entry.sha256, entry.size):
            raise OffsiteError(
                f"off-site object {where}{key}: read back sha256 {digest.hexdigest()} "
                f"({size} bytes), uploaded {entry.sha256} ({entry.size} bytes)",
                hint="the copy is not what was sent: check the destination, then run the "
                "backup again",
            )
        reporter.progress(
            "read-back",
            f"read back: {index}/{len(sent)} objects match",
            completed=index,
            total=len(sent),
            unit="objects",
        )


def _stream(store: ObjectStore, key: str, where: str) -> Iterator[bytes]:
    try:
        result = obstore.get(store, key)
    except FileNotFoundError as exc:
        raise OffsiteError(f"off-site object {where}{key}: not found") from exc
    for block in result.stream():
        yield bytes(block)


def download(
    destination: Destination,
    name: str,
    into: Path,
    identity_file: Path | None,
    reporter: Reporter,
    *,
    store: ObjectStore | None = None,
) -> Manifest:
    """Fetch the off-site copy of backup `name` into the empty private directory `into`,
    decrypting where it was encrypted, and verify every file against its manifest."""
    store = store or destination.store(name)
    where = destination.where(name)
    listed = {item["path"] for batch in obstore.list(store) for item in batch}
    if not listed:
        raise OffsiteError(f"no backup {name!r} at {where}")
    sealed = MANIFEST + SEALED in listed
    if not sealed and MANIFEST not in listed:
        raise OffsiteError(f"{where}: no manifest (an upload cut short); not a whole backup")
    keys = identities(identity_file, where) if sealed else []
    suffix = SEALED if sealed else ""
    with _scratch(into) as scratch:
        _get(store, MANIFEST + suffix, into / MANIFEST, keys=keys, scratch=scratch, where=where)
        try:
            manifest = Manifest.loads((into / MANIFEST).read_text())
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupCorrupt(f"{where}{MANIFEST + suffix}: unreadable manifest ({exc})") from exc
        root = into.resolve()
        total = sum(e.size for e in manifest.files.values())
        done = 0
        for relative in sorted(manifest.files):
            path = into / relative
            if not path.resolve().is_relative_to(root) or relative + suffix not in listed:
                raise BackupCorrupt(f"{where}: {relative!r} missing or outside the backup")
            private_dir(path.parent, parents=True, exist_ok=True)
            _get(store, relative + suffix, path, keys=keys, scratch=scratch, where=where)
            done += manifest.files[relative].size
            reporter.progress(
                "fetch",
                f"fetch: {human_size(done)} of {human_size(total)}",
                completed=done,
                total=total,
                unit="bytes",
                bytes=done,
            )
    return verify(into)  # every file's plaintext sha256 and size, as the manifest lists them


@contextmanager
def _scratch(into: Path) -> Iterator[Path]:
    scratch = private_dir(into / ".fetching")
    try:
        yield scratch
    finally:
        for leftover in scratch.iterdir():
            leftover.unlink()
        scratch.rmdir()


def _get(
    store: ObjectStore,
    key: str,
    dest: Path,
    *,
    keys: list[pyrage.x25519.Identity],
    scratch: Path,
    where: str,
) -> None:
    """Object `key` into `dest` (0600), through age when `keys` are given."""
    target = scratch / "sealed" if keys else dest
    with private_open(target) as out:
        for block in _stream(store, key, where):
            out.write(block)
    if not keys:
        return
    try:
        with target.open("rb") as sealed, private_open(dest) as plain:
            pyrage.decrypt_io(sealed, plain, keys)
    except pyrage.DecryptError as exc:
        dest.unlink(missing_ok=True)
        raise OffsiteError(
            f"off-site object {where}{key}: cannot decrypt with "
            f"COACH_BACKUP_AGE_IDENTITY_FILE ({exc})",
            hint="give the identity whose public key the backup was encrypted to",
        ) from exc
