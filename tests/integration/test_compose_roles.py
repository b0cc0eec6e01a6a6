"""Service roles as `docker compose config` renders them (ops/stack/roles.py): every service
of every profile of the development, production and production+TLS+Swarm file sets has a
known role, and the lookups the tooling makes name today's services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.images.catalog import load_images
from ops.images.resolve import Resolved
from ops.paths import COMPOSE_DIR
from ops.stack import roles
from ops.stack.fallback import write_fallback
from ops.stack.project import Project
from ops.swarm import cluster
from tests.unit.test_roles import SERVICE_NAMES

NAME = "coach-roles-test"  # a project of its own: no developer's fallback override applies


def _prod(tmp: Path, **kwargs: Any) -> Project:
    overrides = (
        ("SECRETS_DIR", str(tmp / "prod")),  # only named by the model: nothing reads them
        ("PROD_ENV_FILE", str(COMPOSE_DIR / ".env.prod.example")),
    )
    return Project("prod", ("*",), project_name=NAME, overrides=overrides, **kwargs)


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("roles")
    return {
        "dev": Project("dev", ("*",), project_name=NAME).config(),
        "prod": _prod(tmp).config(),
        "prod+tls+swarm": _prod(tmp, tls=True, swarm=True).config(),
    }


@pytest.fixture(params=["dev", "prod", "prod+tls+swarm"])
def config(request: pytest.FixtureRequest, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return configs[str(request.param)]


def test_every_service_of_every_profile_has_a_known_role(config: dict[str, Any]) -> None:
    # The scheduled backups are production's (docker-compose.prod.yml) only.
    expected = SERVICE_NAMES - ({"backup"} if "backup" not in config["services"] else set())
    assert set(roles.roles_of(config)) == set(config["services"]) == expected


def test_lookups_name_todays_services(config: dict[str, Any]) -> None:
    assert roles.writers(config) == ["backend", "celery-beat", "celery-worker"]
    assert roles.one_shot(config) == ["migrate", "minio-init"]
    assert roles.services_with(config, role="edge") == ["nginx"]
    assert roles.services_with(config, role="data") == ["minio", "postgres", "qdrant", "redis"]
    stores = {store: roles.store_service(config, store) for store in roles.STORES}
    assert stores == {
        "database": "postgres",
        "broker": "redis",
        "vectors": "qdrant",
        "objects": "minio",
    }
    assert roles.settings_service(config) == "backend"
    assert roles.app_services(config) == ["backend", "celery-beat", "celery-worker", "migrate"]
    # Built here: the app image, and in production the ops image of the scheduled backups.
    built = ["backend", "backup"] if "backup" in config["services"] else ["backend"]
    assert roles.build_targets(config) == built
    assert roles.backup_services(config) == built[1:]
    assert roles.app_image(config) == config["services"]["backend"]["image"]
    assert roles.fallbacks(config) == {
        "QDRANT_IMAGE": (("qdrant",), "local-stores"),
        "MINIO_IMAGE": (("minio", "minio-init"), "local-stores"),
        "GRAFANA_IMAGE": (("grafana",), "optional"),
        "JAEGER_IMAGE": (("jaeger",), "optional"),
    }
    assert roles.otlp_endpoint(config, []) == "http://jaeger:4318"
    assert roles.otlp_endpoint(config, ["jaeger"]) is None


def test_without_the_profile_there_is_no_trace_receiver() -> None:
    config = Project("dev", project_name=NAME).config()
    assert "jaeger" not in config["services"]
    assert roles.otlp_endpoint(config, []) is None


def test_swarm_init_labels_what_the_placement_constraints_name() -> None:
    assert cluster.node_labels() == [
        "coach.edge=true",
        "coach.objects=true",
        "coach.observability=true",
        "coach.postgres=true",
        "coach.qdrant=true",
        "coach.redis=true",
    ]


@pytest.fixture
def project() -> Iterator[Project]:
    project = Project("dev", project_name=NAME)
    yield project
    project.fallback_file.unlink(missing_ok=True)


def test_fallback_for_missing_stores_leaves_them_out_and_nothing_waits_for_them(
    project: Project,
) -> None:
    missing = {"QDRANT_IMAGE", "MINIO_IMAGE"}
    resolved = [
        Resolved(var, ref, str(ref), "unavailable" if var in missing else "local")
        for var, ref in load_images().items()
    ]
    left_out, notes = write_fallback(project, resolved, project.config())
    assert sorted(left_out) == ["minio", "minio-init", "qdrant"]
    assert notes == [
        "QDRANT_IMAGE unavailable: qdrant left out; app uses Qdrant local mode on volume "
        "local-stores",
        "MINIO_IMAGE unavailable: minio, minio-init left out; app uses local object directory "
        "on volume local-stores",
    ]
    services = project.config()["services"]  # with the override written
    for name in roles.app_services({"services": services}):
        env = services[name]["environment"]
        assert (env["QDRANT_URL"], env["S3_ENDPOINT_URL"]) == ("", ""), name
        assert env["DATA_DIR"] == "/var/lib/coach", name
        assert any(v.get("source") == "local-stores" for v in services[name]["volumes"]), name
    for name in ("backend", "celery-worker", "celery-beat"):
        assert set(services[name]["depends_on"]) == {"migrate", "postgres", "redis"}, name
    assert set(services["migrate"]["depends_on"]) == {"postgres"}
    assert not {
        (name, dep)
        for name, spec in services.items()
        if name not in left_out
        for dep in spec.get("depends_on") or {}
        if dep in left_out
    }


def test_fallback_for_an_optional_image_writes_no_override(project: Project) -> None:
    resolved = [
        Resolved(var, ref, str(ref), "unavailable" if var == "GRAFANA_IMAGE" else "local")
        for var, ref in load_images().items()
    ]
    config = Project("dev", ("observability",), project_name=NAME).config()
    assert write_fallback(project, resolved, config) == (
        ["grafana"],
        ["GRAFANA_IMAGE unavailable: grafana left out"],
    )
    assert not project.fallback_file.exists()
