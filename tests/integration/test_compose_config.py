"""Development and production separated, as `docker compose config` renders them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from ops.paths import COMPOSE_DIR, ROOT
from ops.stack import alerting, secrets
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
    # The observability profile too: its exporters and Prometheus hold secrets as well.
    prod = Project(
        "prod",
        profiles=("observability",),
        overrides=(("SECRETS_DIR", str(root / "prod")), ("PROD_ENV_FILE", str(env_file))),
    )
    dev = Project("dev", profiles=("observability",))
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
        assert not any(
            k.endswith(("PASSWORD", "_KEY")) and not k.endswith("_FILE") and k != "S3_ACCESS_KEY_ID"
            for k in env
        ), f"{name}: plaintext secret"
    assert prod["services"]["minio-init"]["environment"]["S3_BUCKET"] == "coach-prod-objects"


@pytest.mark.parametrize("which", ["prod", "dev"])
def test_app_services_use_least_privilege_users(rendered: Any, which: str) -> None:
    """The bootstrap superuser's password reaches the postgres container and the migrate step
    only; the app connects as its own roles and users; so does each exporter."""
    config = rendered[0] if which == "prod" else rendered[1]
    services = config["services"]
    holders = {n for n, s in services.items() if "postgres_password" in _sources(s)}
    # And production's scheduled backups: pg_dump of every table, as the bootstrap superuser
    # (docs/security.md); that service serves nothing and reaches only the app network.
    assert holders == {"postgres", "migrate"} | ({"backup"} if which == "prod" else set())
    assert not {n for n, s in services.items() if "minio_root_password" in _sources(s)} - {
        "minio",
        "minio-init",
    }
    for name in ("backend", "celery-worker"):
        env = services[name]["environment"]
        assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD_FILE"]) == (
            "coach_app",
            "/run/secrets/postgres_app_password",
        ), name
        assert (env["REDIS_USER"], env["S3_ACCESS_KEY_ID"]) == ("app", "coach-app"), name
        assert env["S3_SECRET_ACCESS_KEY_FILE"] == "/run/secrets/minio_app_password", name
    assert _sources(services["celery-beat"]) == {"redis_password"}
    migrate = services["migrate"]["environment"]
    assert (migrate["POSTGRES_USER"], migrate["POSTGRES_APP_USER"]) == ("coach", "coach_app")
    assert services["postgres-exporter"]["environment"]["DATA_SOURCE_USER"] == "coach_exporter"
    assert services["redis-exporter"]["environment"]["REDIS_USER"] == "exporter"
    assert not [f for f in services["prometheus"]["command"] if "lifecycle" in f]


@pytest.mark.parametrize("which", ["prod", "dev"])
def test_each_service_mounts_only_the_secrets_it_reads(rendered: Any, which: str) -> None:
    """A secret mounted under /run/secrets is named by the service's environment (*_FILE),
    command, entrypoint or healthcheck, or by a config file it is given; and everything so
    named is mounted. A secret mounted elsewhere is a config file read at that path."""
    config = rendered[0] if which == "prod" else rendered[1]
    for name, service in config["services"].items():
        targets = [s.get("target") or s["source"] for s in service.get("secrets") or []]
        paths = {t if t.startswith("/") else f"{SECRETS}/{t}" for t in targets}
        mounted = {p for p in paths if p.startswith(f"{SECRETS}/")}
        named = _named_secrets(service)
        if name == "alertmanager":
            # The receivers' files: read by whichever receivers COACH_ALERT_RECEIVERS turns
            # on (ops/stack/alerting.py renders the config); all mounted, so none needs a
            # compose change.
            named |= {
                f"{SECRETS}/{alerting.WEBHOOK_URL}",
                f"{SECRETS}/{alerting.SLACK_URL}",
                f"{SECRETS}/{alerting.SMTP_PASSWORD}",
            }
        assert mounted == named, f"{name}: mounts {sorted(mounted)}, reads {sorted(named)}"


SECRETS = "/run/secrets"
SECRET_PATH = re.compile(r"/run/secrets/[A-Za-z0-9_.-]+")
# Config files among a service's bind mounts (not the source the dev override mounts).
CONFIG_SUFFIXES = {".yml", ".yaml", ".conf", ".template"}


def _sources(service: dict[str, Any]) -> set[str]:
    return {s["source"] for s in service.get("secrets") or []}


def _named_secrets(service: dict[str, Any]) -> set[str]:
    """Every /run/secrets path a service's definition or its mounted config files name."""
    texts = [json.dumps([service.get(k) for k in ("command", "entrypoint", "healthcheck")])]
    for key, value in (service.get("environment") or {}).items():
        text = "" if value is None else str(value)
        if key.endswith("_FILE") and text and "/" not in text:
            text = f"{SECRETS}/{text}"  # minio's MINIO_ROOT_PASSWORD_FILE: a name under it
        texts.append(text)
    for mount in service.get("volumes") or []:
        source = Path(mount.get("source") or "")
        if mount.get("type") == "bind" and source.is_relative_to(ROOT):
            files = sorted(source.rglob("*")) if source.is_dir() else [source]
            configs = [f for f in files if f.is_file() and f.suffix in CONFIG_SUFFIXES]
            texts += [f.read_text(errors="replace") for f in configs]
    return {match for text in texts for match in SECRET_PATH.findall(text)}


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


EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 - what production publishes on, asserted


def test_tls_in_production_is_public_and_plain_http_redirects(tmp_path: Path) -> None:
    """--prod --tls: HTTPS on every interface at 443, port 80 redirecting (nginx's
    NGINX_HTTPS_REDIRECT), the redirect naming the published port; a developer's --tls stays
    on the loopback."""
    secrets.generate("prod", root=tmp_path)
    env_file = tmp_path / ".env.prod"
    shutil.copy(COMPOSE_DIR / ".env.prod.example", env_file)
    prod = Project(
        "prod",
        tls=True,
        overrides=(("SECRETS_DIR", str(tmp_path / "prod")), ("PROD_ENV_FILE", str(env_file))),
    ).config()
    nginx = prod["services"]["nginx"]
    published = {(p["host_ip"], p["published"], p["target"]) for p in nginx["ports"]}
    assert published == {(EVERY_INTERFACE, "80", 8080), (EVERY_INTERFACE, "443", 8443)}
    assert nginx["environment"]["NGINX_HTTPS_REDIRECT"] == "1"
    assert nginx["environment"]["NGINX_HTTPS_PORT"] == "443"
    dev_tls = Project("dev", tls=True, overrides=(("SECRETS_DIR", str(tmp_path / "prod")),))
    dev = dev_tls.config()["services"]["nginx"]
    assert {(p["host_ip"], p["published"]) for p in dev["ports"] if p["target"] == 8443} == {
        ("127.0.0.1", "8443")
    }
    assert dev["environment"]["NGINX_HTTPS_PORT"] == "8443"


def test_only_nginx_network_is_trusted_for_forwarded_headers(rendered: Any) -> None:
    """nginx reaches the backend by a name that exists on the edge network only, and the
    backend trusts X-Forwarded-For from that network alone; docs are off in production."""
    prod, dev, _ = rendered
    for config in (prod, dev):
        backend = config["services"]["backend"]
        assert backend["networks"]["edge"]["aliases"] == ["backend-edge"]
        assert not any(
            (n or {}).get("aliases") for k, n in backend["networks"].items() if k != "edge"
        )
        assert backend["environment"]["TRUSTED_PROXIES"] == "backend-edge"
        assert config["services"]["nginx"]["environment"]["BACKEND_HOST"] == "backend-edge"
        assert "API_DOCS_ENABLED" not in backend["environment"]
    assert prod["services"]["backend"]["environment"]["ENVIRONMENT"] == "production"
