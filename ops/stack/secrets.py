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
from ops.paths import COMPOSE_DIR

SECRETS_ROOT = COMPOSE_DIR / "secrets"
# REDIS_ADDR of the redis-exporter service (infra/compose/docker-compose.yml).
REDIS_EXPORTER_ADDR = "redis://redis:6379"
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


def _random(brought: Mapping[str, str]) -> dict[str, str]:
    values = {
        "postgres_password": _token(),
        "redis_password": _token(),
        "qdrant_api_key": _token(),
        "minio_root_password": _token(),
        "grafana_admin_password": _token(),
    }
    return values | {name: brought.get(name, "") for name in BROUGHT}


def _derived(values: dict[str, str]) -> dict[str, str]:
    """Secrets that restate another one in the form an image insists on; always rewritten
    from the secret they follow, so the two can never disagree."""
    return {
        # Qdrant reads no *_FILE variables: its key arrives as a config file (local.yaml).
        "qdrant_config.yaml": f"service:\n  api_key: {values['qdrant_api_key']}\n",
        # redis_exporter's REDIS_PASSWORD_FILE is a JSON map from its REDIS_ADDR to a password.
        "redis_exporter_passwords.json": json.dumps({REDIS_EXPORTER_ADDR: values["redis_password"]})
        + "\n",
        # Prometheus' bearer token for MinIO's metrics endpoints.
        "minio_prometheus_token": minio_prometheus_token(values["minio_root_password"]) + "\n",
    }


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


def names() -> list[str]:
    """Every secret an operator may set or rotate (the derived ones follow by themselves)."""
    return list(_random({}))


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
    unknown = sorted(set(only or ()) - set(names()))
    if unknown:
        raise ConfigError(f"no secret {', '.join(unknown)}", hint=f"known: {', '.join(names())}")
    if not dry_run:
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(0o700)
    given = {"llm_api_key": llm_api_key, "alertmanager_webhook_url": alertmanager_webhook_url}
    supplied = {k: v for k, v in (given | dict(brought or {})).items() if v}
    values = _random(supplied)
    write = _planned if dry_run else _write
    written: list[Written] = []
    for name in values:
        path = target / name
        replace = force and (only is None or name in only)
        if name in BROUGHT:
            # An operator's own value is never lost to a rotation of the random ones, and a
            # new value for one that exists is an explicit replacement, not silently dropped.
            named = only is not None and name in only
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
