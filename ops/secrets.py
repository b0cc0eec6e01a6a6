"""Secrets for the compose stacks: random values written as files, one per secret, mounted as
Docker secrets and read by the services through *_FILE. Never overwritten without force."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from ops.paths import COMPOSE_DIR

SECRETS_ROOT = COMPOSE_DIR / "secrets"


@dataclass(frozen=True)
class Written:
    name: str
    path: Path
    action: str  # "created", "kept" or "replaced"


def _token() -> str:
    return secrets.token_urlsafe(32)


def _values(llm_api_key: str) -> dict[str, str]:
    qdrant_key = _token()
    return {
        "postgres_password": _token(),
        "redis_password": _token(),
        "qdrant_api_key": qdrant_key,
        # Qdrant reads no *_FILE variables: its key arrives as a config file (local.yaml).
        "qdrant_config.yaml": f"service:\n  api_key: {qdrant_key}\n",
        "minio_root_password": _token(),
        "llm_api_key": llm_api_key,
        "grafana_admin_password": _token(),
    }


def directory(env: str) -> Path:
    if env not in {"dev", "prod"}:
        raise ValueError(f"environment must be dev or prod, not {env!r}")
    return SECRETS_ROOT / env


def generate(
    env: str, *, force: bool = False, llm_api_key: str = "", root: Path | None = None
) -> list[Written]:
    """Create every missing secret file (all of them with force). Files are 0644 inside a
    0700 directory: containers read them as their own non-root users through the bind mount,
    while other users of the host cannot reach them."""
    target = directory(env) if root is None else root / directory(env).name
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o700)
    existing = {p.name for p in target.iterdir()}
    qdrant_pair = {"qdrant_api_key", "qdrant_config.yaml"}
    if not force and qdrant_pair & existing and not qdrant_pair <= existing:
        raise ValueError(
            f"{target}: qdrant_api_key and qdrant_config.yaml must be generated "
            "together; use --force to regenerate both"
        )
    written: list[Written] = []
    for name, value in _values(llm_api_key).items():
        path = target / name
        if path.exists() and not force:
            written.append(Written(name, path, "kept"))
            continue
        action = "replaced" if path.exists() else "created"
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(value)
        tmp.chmod(0o644)
        tmp.replace(path)
        written.append(Written(name, path, action))
    return written
