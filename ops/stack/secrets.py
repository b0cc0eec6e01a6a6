"""Secrets for the compose stacks: random values written as files, one per secret, mounted as
Docker secrets and read by the services through *_FILE. Never overwritten without force."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from ops.errors import ConfigError
from ops.paths import COMPOSE_DIR, ROOT

SECRETS_ROOT = COMPOSE_DIR / "secrets"
# REDIS_ADDR of the redis-exporter service (infra/compose/docker-compose.yml) with its REDIS_USER:
# the key under which the exporter looks the password up.
REDIS_EXPORTER_ADDR = "redis://exporter@redis:6379"
# Redis users (REDIS_USER of the app services and of redis-exporter in docker-compose.yml).
REDIS_APP_USER = "app"
REDIS_EXPORTER_USER = "exporter"
REDIS_EXPORTER_ACL = (
    "-@all +@connection +memory -readonly +strlen +config|get +xinfo +pfcount -quit +zcard "
    "+type +xlen -readwrite -command +client -wait +scard +llen +hlen +get +eval +slowlog "
    "+cluster|info +cluster|slots +cluster|nodes -hello -echo +info +latency +scan -reset "
    "-auth -asking"
)
# MINIO_ROOT_USER of the minio service (infra/compose/docker-compose.yml).
MINIO_ROOT_USER = "coach"
# Expiry of the MinIO metrics token: fixed (2100-01-01T00:00:00Z), so that the derived file is
# the same on every run, as the other derived secrets are; `mc admin prometheus generate` also
# issues tokens for a century.
MINIO_TOKEN_EXPIRES = 4102444800


@dataclass(frozen=True)
class Written:
    name: str
    path: Path
    action: str  # "created", "kept" or "replaced"


def _token() -> str:
    return secrets.token_urlsafe(32)


# Values an operator brings (empty until then), rather than random ones.
BROUGHT = (
    "llm_api_key",
    # Alertmanager's receivers (ops/stack/alerting.py). Read at send time (webhook url_file,
    # slack api_url_file, email auth_password_file); empty: alerts still show in Alertmanager
    # and Grafana, and each notification attempt of a receiver turned on logs a warning.
    "alertmanager_webhook_url",
    "alertmanager_slack_url",
    "alertmanager_smtp_password",
    # WeCom's application secret: copied into the rendered config (no api_secret_file in 0.28).
    "alertmanager_wechat_secret",
)


# The development stack's API key (tenant "dev", scope write), registered by the dev migrate
# service (API_KEY_BOOTSTRAP_FILE) and by the embedded app. Development only: production keys
# are made with `invoke keys.create`. Every client of the dev stack holds it, so a rotation of
# the others keeps it; it is replaced only when named (`--force --secret api_key`).
# The key file is 0600 and never mounted: the dev migrate service reads api_key_sha256 (its
# hash and prefix, coach/apikeys.py's bootstrap form), which names no secret.
DEV_API_KEY = "api_key"
DEV_API_KEY_DIGEST = "api_key_sha256"
API_KEY_PREFIX = "coach_"  # the app's key format (coach/apikeys.py)


def _random(brought: Mapping[str, str], env: str = "prod") -> dict[str, str]:
    values = {
        # The bootstrap superuser's: the postgres container and the migrate step only.
        "postgres_password": _token(),
        # Roles the migrate step keeps (coach/dbroles.py): the app's and the exporter's logins.
        "postgres_app_password": _token(),
        "postgres_exporter_password": _token(),
        # Redis ACL users (redis_users.acl below): the app's ("app") and the exporter's.
        "redis_password": _token(),
        "redis_exporter_password": _token(),
        "qdrant_api_key": _token(),
        "minio_root_password": _token(),
        # The app's own MinIO user, made by minio-init, allowed the app's bucket only.
        "minio_app_password": _token(),
        "grafana_admin_password": _token(),
    }
    if env == "dev":
        values[DEV_API_KEY] = API_KEY_PREFIX + _token()
    return values | {name: brought.get(name, "") for name in BROUGHT}


def _derived(values: dict[str, str]) -> dict[str, str]:
    """Secrets that restate another one in the form an image insists on; always rewritten
    from the secret they follow, so the two can never disagree."""
    return {
        # Qdrant reads no *_FILE variables: its key arrives as a config file (local.yaml).
        "qdrant_config.yaml": f"service:\n  api_key: {values['qdrant_api_key']}\n",
        # redis_exporter's REDIS_PASSWORD_FILE is a JSON map from its address to a password.
        "redis_exporter_passwords.json": json.dumps(
            {REDIS_EXPORTER_ADDR: values["redis_exporter_password"]}
        )
        + "\n",
        # Redis' users (aclfile), passwords as their sha256: the file holds no plaintext.
        "redis_users.acl": redis_acl(values["redis_password"], values["redis_exporter_password"]),
        # Prometheus' bearer token for MinIO's metrics endpoints.
        "minio_prometheus_token": minio_prometheus_token(values["minio_root_password"]) + "\n",
    } | (
        # The dev key's bootstrap form (dev only): what the migrate service registers.
        {DEV_API_KEY_DIGEST: api_key_digest(values[DEV_API_KEY])} if DEV_API_KEY in values else {}
    )


def api_key_digest(key: str) -> str:
    """`sha256:<hex> <prefix>` of a key, the form coach.apikeys.read_key_file accepts."""
    key = key.strip()
    return f"sha256:{hashlib.sha256(key.encode()).hexdigest()} {key[: len(API_KEY_PREFIX) + 8]}\n"


def redis_acl(app_password: str, exporter_password: str) -> str:
    """Redis' ACL file. `default` (what a client without a user name gets) is off. The app's
    user may run every command but the dangerous ones (CONFIG, FLUSHALL, KEYS, DEBUG, SHUTDOWN,
    MONITOR, ACL changes...): Celery and kombu need none of them (queues, pub/sub, Lua
    scripts of the beat lock, MULTI). The exporter's is redis_exporter's documented minimal one
    (README, "Authenticating with Redis"); its PING (@connection) is the server's healthcheck."""

    def digest(password: str) -> str:
        # The app reads its password file without the trailing newline (coach/settings.py).
        return hashlib.sha256(password.rstrip("\r\n").encode()).hexdigest()

    return "\n".join(
        [
            "user default off resetpass nocommands resetkeys resetchannels",
            f"user {REDIS_APP_USER} on #{digest(app_password)} ~* &* +@all -@dangerous",
            f"user {REDIS_EXPORTER_USER} on #{digest(exporter_password)} {REDIS_EXPORTER_ACL}",
            "",
        ]
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def minio_prometheus_token(root_password: str) -> str:
    """What `mc admin prometheus generate` prints, computed without a running MinIO: a JWT
    (HS512) for the root user, signed with its password. MinIO accepts it on its metrics
    endpoints (/minio/v2/metrics/*, when MINIO_PROMETHEUS_AUTH_TYPE is the default jwt) and
    nowhere else (the S3 and admin APIs want signed requests), so Prometheus holds a credential
    that reads metrics and nothing more, and the endpoint stays closed to the rest."""
    header = _b64(b'{"alg":"HS512","typ":"JWT"}')
    claims = {"exp": MINIO_TOKEN_EXPIRES, "iss": "prometheus", "sub": MINIO_ROOT_USER}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    # MinIO trims the password file it reads (MINIO_ROOT_PASSWORD_FILE): sign with the same.
    key = root_password.strip().encode()
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha512).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def directory(env: str) -> Path:
    if env not in {"dev", "prod"}:
        raise ConfigError(f"environment must be dev or prod, not {env!r}")
    return SECRETS_ROOT / env


def names(env: str = "prod") -> list[str]:
    """Every secret an operator may set or rotate (the derived ones follow by themselves)."""
    return list(_random({}, env))


def dev_api_key(root: Path | None = None) -> Path:
    """The development API key's file, made with the other dev secrets if missing."""
    [written] = [w for w in generate("dev", root=root) if w.name == DEV_API_KEY]
    return written.path


def dev_api_key_note(path: Path) -> str:
    """Where the dev key is and how to send it, in one line; never the key itself."""
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return (
        f"API key (development: tenant dev, scope write) in {where}; send it as "
        f'-H "Authorization: Bearer $(cat {where})"'
    )


def generate(
    env: str,
    *,
    force: bool = False,
    only: Collection[str] | None = None,
    dry_run: bool = False,
    llm_api_key: str = "",
    alertmanager_webhook_url: str = "",
    brought: Mapping[str, str] | None = None,
    root: Path | None = None,
) -> list[Written]:
    """Create every missing secret file; with force, replace them too (only those named in
    `only`, if given); with dry_run, say what would happen and write nothing. Files are 0644 in a
    0700 directory: containers read them as their own non-root users through the bind mount,
    while other users of the host cannot reach them. `brought`: values of BROUGHT secrets."""
    target = directory(env) if root is None else root / directory(env).name
    known = names(env)
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise ConfigError(f"no secret {', '.join(unknown)}", hint=f"known: {', '.join(known)}")
    if not dry_run:
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(0o700)
    given = {"llm_api_key": llm_api_key, "alertmanager_webhook_url": alertmanager_webhook_url}
    supplied = {k: v for k, v in (given | dict(brought or {})).items() if v}
    values = _random(supplied, env)
    write = _planned if dry_run else _write
    written: list[Written] = []
    for name in values:
        path = target / name
        named = only is not None and name in only
        replace = force and (named if name == DEV_API_KEY else only is None or named)
        if name in BROUGHT:
            # An operator's own value is never lost to a rotation of the random ones, and a
            # new value for one that exists is an explicit replacement, not silently dropped.
            if path.exists() and name in supplied and not (force and named):
                raise ConfigError(
                    f"secret {name} exists; a new value replaces it only when named",
                    hint=f"add --force --secret {name}",
                )
            if named and force and name not in supplied:
                raise ConfigError(
                    f"--force --secret {name} needs its new value",
                    hint="give it with --secret-file NAME=FILE (or --llm-api-key-file)",
                )
            replace = force and named
        if path.exists() and not replace:
            values[name] = path.read_text()
            written.append(Written(name, path, "kept"))
        else:
            written.append(Written(name, path, write(path, values[name])))
        if name == DEV_API_KEY and not dry_run:
            path.chmod(0o600)  # read on the host only (clients); containers get the digest
    for name, value in _derived(values).items():
        path = target / name
        same = path.exists() and path.read_text() == value
        written.append(Written(name, path, "kept" if same else write(path, value)))
    return written


def _planned(path: Path, value: str) -> str:
    return "would replace" if path.exists() else "would create"


def _write(path: Path, value: str) -> str:
    action = "replaced" if path.exists() else "created"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(value)
    tmp.chmod(0o644)
    tmp.replace(path)
    return action
