"""API keys: who is calling (a tenant) and what they may do (scopes).

A key is "coach_" + 256 random bits, shown once when it is made; the database keeps its sha256
only. Lookup by that hash through a unique index is safe against timing attacks: a key that
long cannot be guessed byte by byte, and the hash comparison happens inside the index, not on
the secret. The prefix (the first characters of the key) names a key in listings and logs and
proves nothing.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import secrets
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from coach.db import session_scope
from coach.errors import InvalidInput, NotFound
from coach.models import ApiKey, utcnow
from coach.settings import Settings

log = structlog.get_logger(__name__)

KEY_PREFIX = "coach_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8  # 48 random bits: unambiguous among any real key count
_KEY = re.compile(r"^coach_[A-Za-z0-9_-]{32,128}$")
_DIGEST = re.compile(r"^sha256:(?P<hash>[0-9a-f]{64}) (?P<prefix>coach_[A-Za-z0-9_-]{8})$")
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_TENANT = re.compile(TENANT_PATTERN)
BOOTSTRAP_TENANT = "dev"
BOOTSTRAP_NAME = "dev"
DEV_KEY_FILE = "dev_api_key"  # in DATA_DIR, embedded mode only


class Scope(enum.StrEnum):
    read = "read"
    write = "write"
    admin = "admin"


# What each granted scope carries with it: admin implies write, write implies read.
IMPLIED: dict[Scope, frozenset[Scope]] = {
    Scope.read: frozenset({Scope.read}),
    Scope.write: frozenset({Scope.read, Scope.write}),
    Scope.admin: frozenset({Scope.read, Scope.write, Scope.admin}),
}


def effective(granted: Iterable[str]) -> frozenset[Scope]:
    """The scopes a key holds, implications included; unknown stored names grant nothing."""
    held: set[Scope] = set()
    for name in granted:
        if name in Scope.__members__:
            held |= IMPLIED[Scope(name)]
    return frozenset(held)


def ordered(scopes: Iterable[Scope]) -> list[str]:
    held = set(scopes)
    return [s.value for s in Scope if s in held]


@dataclass(frozen=True)
class Principal:
    """The caller behind a valid key."""

    key_id: uuid.UUID
    tenant: str
    name: str
    scopes: frozenset[Scope]
    prefix: str = ""  # for log lines: names the key without revealing it


@dataclass(frozen=True)
class KeyInfo:
    """A key as listings show it: never the key, never its hash."""

    id: uuid.UUID
    prefix: str
    tenant: str
    name: str
    scopes: list[str]  # effective, in order read, write, admin
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyInfo:
        return cls(
            row.id,
            row.prefix,
            row.tenant,
            row.name,
            ordered(effective(row.scopes)),
            row.created_at,
            row.revoked_at,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "prefix": self.prefix,
            "tenant": self.tenant,
            "scopes": self.scopes,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


Sessions = async_sessionmaker[AsyncSession]


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def prefix_of(key: str) -> str:
    return key[:PREFIX_LENGTH]


def looks_like_key(key: str) -> bool:
    return bool(_KEY.match(key))


def parse_scope(name: str) -> Scope:
    try:
        return Scope(name)
    except ValueError:
        raise InvalidInput(
            f"unknown scope {name!r}; one of {', '.join(s.value for s in Scope)}"
        ) from None


def validate_tenant(tenant: str) -> str:
    if not _TENANT.match(tenant):
        raise InvalidInput(
            f"tenant {tenant!r}: 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or "
            "digit"
        )
    return tenant


def validate_name(name: str) -> str:
    if not 1 <= len(name) <= 100 or not name.isprintable():
        raise InvalidInput("name must be 1 to 100 printable characters")
    return name


async def create(
    sessions: Sessions,
    *,
    tenant: str,
    scopes: Sequence[Scope | str],
    name: str | None = None,
    key: str | None = None,
) -> tuple[KeyInfo, str]:
    """A new key: (what listings show, the plaintext key, shown this once)."""
    validate_tenant(tenant)
    granted = ordered(parse_scope(str(s)) for s in scopes)
    if not granted:
        raise InvalidInput("a key needs at least one scope")
    name = validate_name(name if name is not None else tenant)
    key = key or generate_key()
    if not looks_like_key(key):
        raise InvalidInput(f"a key is {KEY_PREFIX!r} followed by 32 or more URL-safe characters")
    async with session_scope(sessions) as session:
        row = ApiKey(
            prefix=prefix_of(key), key_hash=hash_key(key), tenant=tenant, name=name, scopes=granted
        )
        session.add(row)
        await session.flush()
        info = KeyInfo.of(row)
    log.info("api key created", key_id=str(info.id), key_prefix=info.prefix, tenant=tenant)
    return info, key


async def authenticate(sessions: Sessions, key: str) -> Principal | None:
    """The principal behind `key`, or None for a malformed, unknown or revoked key."""
    if not looks_like_key(key):
        return None  # no database round trip for garbage
    async with sessions() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(row.id, row.tenant, row.name, effective(row.scopes), row.prefix)


async def list_keys(sessions: Sessions, *, tenant: str | None = None) -> list[KeyInfo]:
    async with sessions() as session:
        query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if tenant is not None:
            query = query.where(ApiKey.tenant == tenant)
        return [KeyInfo.of(row) for row in await session.scalars(query)]


async def revoke(sessions: Sessions, id_or_prefix: str) -> KeyInfo:
    """Revoke the key with this id or prefix (again: no change). Unknown or ambiguous: an error,
    and nothing changes."""
    try:
        by_id = ApiKey.id == uuid.UUID(id_or_prefix)
    except ValueError:
        condition = ApiKey.prefix == id_or_prefix
    else:
        condition = or_(by_id, ApiKey.prefix == id_or_prefix)
    async with session_scope(sessions) as session:
        rows = list(await session.scalars(select(ApiKey).where(condition)))
        if not rows:
            raise NotFound(f"no api key with id or prefix {id_or_prefix!r}")
        if len(rows) > 1:
            raise InvalidInput(f"prefix {id_or_prefix!r} names {len(rows)} keys; use the id")
        [row] = rows
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        info = KeyInfo.of(row)
    log.info("api key revoked", key_id=str(info.id), key_prefix=info.prefix, tenant=info.tenant)
    return info


@dataclass(frozen=True)
class KeyRecord:
    """What registering a key needs: its hash and prefix, never the plaintext. A bootstrap file
    holds either the key or `sha256:<hex> <prefix>` (ops writes the latter for the dev stack,
    so the container that registers it never holds the key: the key file stays 0600)."""

    key_hash: str
    prefix: str


def read_key_file(path: Path) -> KeyRecord:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise InvalidInput(f"API_KEY_BOOTSTRAP_FILE {path}: {exc.strerror}") from exc
    if looks_like_key(text):
        return KeyRecord(hash_key(text), prefix_of(text))
    digest = _DIGEST.match(text)
    if digest is not None:
        return KeyRecord(digest["hash"], digest["prefix"])
    raise InvalidInput(
        f"API_KEY_BOOTSTRAP_FILE {path} holds neither a key ({KEY_PREFIX!r} followed by 32 or "
        "more URL-safe characters) nor 'sha256:<64 hex> <prefix>'"
    )


def digest_line(key: str) -> str:
    """The bootstrap form of `key` that names no secret: `sha256:<hex> <prefix>`."""
    return f"sha256:{hash_key(key)} {prefix_of(key)}\n"


def ensure_key_file(path: Path) -> bool:
    """Write a new key to `path` (mode 0600) unless the file exists; True when written.
    Linked into place whole: a process racing this one reads no half-written file."""
    if path.exists():  # first: a mounted secret sits in a read-only directory
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:  # mkstemp: mode 0600 already
            out.write(generate_key() + "\n")
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        Path(temporary).unlink()
    return True


async def ensure_bootstrap(sessions: Sessions, path: Path) -> bool:
    """Register the key in `path` (tenant "dev", scope write, name "dev") unless its hash is
    known already, revoked or not; True when it was added. Concurrent callers are fine."""
    record = read_key_file(path)
    async with sessions() as session:
        known = await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == record.key_hash))
    if known is not None:
        return False
    try:
        async with session_scope(sessions) as session:
            row = ApiKey(
                prefix=record.prefix,
                key_hash=record.key_hash,
                tenant=BOOTSTRAP_TENANT,
                name=BOOTSTRAP_NAME,
                scopes=ordered([Scope.write]),
            )
            session.add(row)
    except IntegrityError:  # another process registered it a moment ago
        return False
    return True


async def bootstrap(settings: Settings, sessions: Sessions) -> Path | None:
    """What `migrate` and the embedded app do at start: register API_KEY_BOOTSTRAP_FILE's key.
    Embedded mode works out of the box: without that setting, DATA_DIR/dev_api_key, made there
    if missing. Returns the key file registered from, if any."""
    path = settings.api_key_bootstrap_file
    if settings.embedded:
        path = path or settings.data_dir / DEV_KEY_FILE
        ensure_key_file(path)
    if path is None:
        return None
    if await ensure_bootstrap(sessions, path):
        log.info("bootstrap api key registered", file=str(path), tenant=BOOTSTRAP_TENANT)
    return path
