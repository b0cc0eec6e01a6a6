"""Development and production separated, as `docker compose config` renders them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ops.paths import COMPOSE_DIR
from ops.stack import secrets
from ops.stack.project import Project

ONE_SHOT = {"migrate", "minio-init"}
DATA_SERVICES = {"postgres", "redis", "qdrant", "minio"}
APP_SERVICES = {"backend", "celery-worker", "celery-beat", "migrate"}


@pytest.fixture(scope="module")
def rendered(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    root = tmp_path_factory.mktemp("prod")
    written = secrets.generate("prod", root=root)
    env_file = root / ".env.prod"
    shutil.copy(COMPOSE_DIR / ".env.prod.example", env_file)
    # Values that compose also interpolates into `environment:`: they must still come through.
    with env_file.open("a") as extra:
        extra.write("LOG_LEVEL=WARNING\nS3_BUCKET=coach-prod-objects\n")
    prod = Project(
        "prod", overrides=(("SECRETS_DIR", str(root / "prod")), ("PROD_ENV_FILE", str(env_file)))
    )
    dev = Project("dev")
    secrets.generate("dev")
    prod_values = [w.path.read_text().strip() for w in written if w.path.read_text().strip()]
    return prod.config(), dev.config(), prod_values


def test_prod_limits_restarts_and_rotates_logs_everywhere(rendered: Any) -> None:
    prod, _, _ = rendered
    for name, service in prod["services"].items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory", "pids"} <= set(limits), f"{name}: limits {limits}"
        assert service["logging"]["driver"] == "json-file", name
        assert service["logging"]["options"]["max-size"], name
        expected = "no" if name in ONE_SHOT else "unless-stopped"
        assert service.get("restart") == expected, name


def test_prod_reads_env_file_and_secrets_and_runs_as_production(rendered: Any) -> None:
    prod, _, _ = rendered
    for name in APP_SERVICES:
        env = prod["services"][name]["environment"]
        assert env["ENVIRONMENT"] == "production", name
        assert env["QUESTION_RETENTION_DAYS"] == "90", f"{name} did not read .env.prod"
        assert (env["LOG_LEVEL"], env["S3_BUCKET"]) == ("WARNING", "coach-prod-objects"), name
        assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
        assert not any(
            k.endswith(("PASSWORD", "_KEY")) and not k.endswith("_FILE") and k != "S3_ACCESS_KEY_ID"
            for k in env
        ), f"{name}: plaintext secret"
        assert {s["source"] for s in prod["services"][name]["secrets"]} >= {
            "postgres_password",
            "redis_password",
            "minio_root_password",
            "llm_api_key",
        }
    assert prod["services"]["minio-init"]["environment"]["S3_BUCKET"] == "coach-prod-objects"


def test_prod_publishes_only_nginx_and_mounts_no_source(rendered: Any) -> None:
    prod, _, _ = rendered
    published = {name for name, s in prod["services"].items() if s.get("ports")}
    assert published == {"nginx"}
    for service in prod["services"].values():
        binds = [v for v in service.get("volumes", []) if v["type"] == "bind"]
        assert not [b for b in binds if b["source"].endswith(("/coach", "/backend", "/worker"))]
    assert all(v.get("external") for v in prod["volumes"].values()), "down -v must not delete"


def test_prod_hardening_where_the_image_allows(rendered: Any) -> None:
    prod, _, _ = rendered
    for name in ("backend", "celery-worker", "celery-beat", "nginx", "postgres", "redis"):
        service = prod["services"][name]
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name


def test_dev_publishes_data_ports_on_loopback_only_and_has_no_prod_secret(rendered: Any) -> None:
    prod, dev, prod_values = rendered
    for name in DATA_SERVICES:
        ports = dev["services"][name].get("ports", [])
        assert ports and all(p["host_ip"] == "127.0.0.1" for p in ports), name
    dev_text = json.dumps(dev)
    assert prod_values and not any(value in dev_text for value in prod_values)
    prod_dirs = {str(Path(s["file"]).parent) for s in prod["secrets"].values()}
    dev_dirs = {
        str(Path(s["file"]).parent)
        for s in dev["secrets"].values()
        if "build-ca" not in s["file"] and "no-extra-ca" not in s["file"]
    }
    assert not prod_dirs & dev_dirs
    assert all(
        dev["services"][n]["environment"].get("ENVIRONMENT") == "development" for n in APP_SERVICES
    )
    assert "restart" not in dev["services"]["backend"]
