"""Secrets: generated once, never overwritten without force, derived forms kept consistent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from pathlib import Path

import pytest
import yaml

from ops.errors import ConfigError
from ops.paths import COMPOSE_DIR
from ops.stack import secrets


def test_generate_creates_keeps_and_forces(tmp_path: Path) -> None:
    first = {w.name: w for w in secrets.generate("prod", root=tmp_path, llm_api_key="sk-1")}
    assert {w.action for w in first.values()} == {"created"}
    directory = tmp_path / "prod"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    before = {p.name: p.read_text() for p in directory.iterdir()}
    assert before["llm_api_key"] == "sk-1"
    assert (
        len(before["postgres_password"]) >= 40
        and before["postgres_password"] != before["redis_password"]
    )

    again = secrets.generate("prod", root=tmp_path)
    assert {w.action for w in again} == {"kept"}
    assert {p.name: p.read_text() for p in directory.iterdir()} == before

    forced = {w.name: w.action for w in secrets.generate("prod", root=tmp_path, force=True)}
    assert forced["postgres_password"] == "replaced"
    assert (directory / "postgres_password").read_text() != before["postgres_password"]
    # A rotation of the random secrets keeps what the operator brought.
    assert forced["llm_api_key"] == "kept"
    assert (directory / "llm_api_key").read_text() == "sk-1"


def test_a_brought_value_replaces_only_when_named(tmp_path: Path) -> None:
    secrets.generate("prod", root=tmp_path, llm_api_key="sk-1")
    key = tmp_path / "prod" / "llm_api_key"
    with pytest.raises(ConfigError, match="secret llm_api_key exists") as refused:
        secrets.generate("prod", root=tmp_path, llm_api_key="sk-2")
    assert refused.value.hint == "add --force --secret llm_api_key"
    with pytest.raises(ConfigError, match="needs its new value"):
        secrets.generate("prod", root=tmp_path, force=True, only=["llm_api_key"])
    assert key.read_text() == "sk-1", "refused: nothing changed"
    secrets.generate("prod", root=tmp_path, force=True, only=["llm_api_key"], llm_api_key="sk-2")
    assert key.read_text() == "sk-2"


def test_derived_secrets_follow_the_secret_they_restate(tmp_path: Path) -> None:
    secrets.generate("dev", root=tmp_path)
    directory = tmp_path / "dev"
    (directory / "redis_exporter_password").write_text("rotated-by-hand")
    (directory / "redis_password").write_text("app-rotated")
    (directory / "qdrant_config.yaml").unlink()
    actions = {w.name: w.action for w in secrets.generate("dev", root=tmp_path)}
    assert actions["redis_exporter_passwords.json"] == "replaced"
    assert actions["redis_users.acl"] == "replaced"
    assert actions["qdrant_config.yaml"] == "created"
    exporter = json.loads((directory / "redis_exporter_passwords.json").read_text())
    assert exporter == {"redis://exporter@redis:6379": "rotated-by-hand"}
    acl = (directory / "redis_users.acl").read_text()
    assert f"user app on #{hashlib.sha256(b'app-rotated').hexdigest()} " in acl
    assert "rotated-by-hand" not in acl and "app-rotated" not in acl, "hashes only"
    key = (directory / "qdrant_api_key").read_text()
    assert (directory / "qdrant_config.yaml").read_text() == f"service:\n  api_key: {key}\n"


def test_minio_metrics_token_is_the_jwt_mc_would_generate(tmp_path: Path) -> None:
    secrets.generate("dev", root=tmp_path)
    directory = tmp_path / "dev"
    password = (directory / "minio_root_password").read_text()
    token = (directory / "minio_prometheus_token").read_text().strip()
    header, payload, signature = token.split(".")

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    assert json.loads(decode(header)) == {"alg": "HS512", "typ": "JWT"}
    claims = json.loads(decode(payload))
    assert claims == {"exp": 4102444800, "iss": "prometheus", "sub": "coach"}
    expected = hmac.new(password.encode(), f"{header}.{payload}".encode(), hashlib.sha512)
    assert hmac.compare_digest(decode(signature), expected.digest())
    # The access key is the minio service's root user.
    minio = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())["services"]["minio"]
    assert minio["environment"]["MINIO_ROOT_USER"] == claims["sub"]

    # Derived: it follows a rotated password, and stays put while the password does.
    (directory / "minio_root_password").write_text("rotated-by-hand\n")
    actions = {w.name: w.action for w in secrets.generate("dev", root=tmp_path)}
    assert actions["minio_prometheus_token"] == "replaced"
    rotated = (directory / "minio_prometheus_token").read_text().strip()
    assert rotated == secrets.minio_prometheus_token("rotated-by-hand")  # MinIO trims the file
    again = {w.name: w.action for w in secrets.generate("dev", root=tmp_path)}
    assert again["minio_prometheus_token"] == "kept"
