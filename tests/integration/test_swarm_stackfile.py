"""The Swarm stack file, rendered from the production compose files with every service and
profile (Qdrant, MinIO, Grafana and Jaeger included, as on a host that has their images) and
TLS: what `invoke swarm.deploy` would hand to `docker stack deploy`. The one-node deploy in
tests/swarm runs the services whose images exist here; this holds the rest to the same rules."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ops.paths import COMPOSE_DIR
from ops.stack import alerting, secrets
from ops.swarm import cluster
from ops.swarm.stackfile import StackFile, render

STATEFUL = {"postgres", "redis", "qdrant", "minio", "prometheus", "alertmanager", "grafana"}
JOBS = {"migrate", "minio-init"}
# One task at a time by nature: a host port (nginx), a schedule (beat), in-memory traces.
STOP_FIRST = STATEFUL | {"nginx", "celery-beat", "jaeger", "backup"}  # backup: one loop
APP_IMAGE = "coach/app:0123456789ab"


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory: pytest.TempPathFactory) -> StackFile:
    root = tmp_path_factory.mktemp("swarm-render")
    secrets.generate("prod", root=root)
    for name in ("tls_cert", "tls_key"):  # content is irrelevant to rendering
        (root / "prod" / name).write_text(f"test {name}\n")
    env_file = root / ".env.prod"
    shutil.copy(COMPOSE_DIR / ".env.prod.example", env_file)
    # The pinned references, as on a host that can pull them: no resolver run, and a project
    # name of its own, so no fallback override of `up` applies.
    project = cluster.project_for(
        "coach-render-test",
        profiles=("observability",),
        tls=True,
        overrides=(
            ("SECRETS_DIR", str(root / "prod")),
            ("PROD_ENV_FILE", str(env_file)),
            ("APP_IMAGE", APP_IMAGE),
        ),
    )
    alerting.write(project)  # Alertmanager's config, as `swarm.deploy` renders it first
    return render(project.config(), "coach", project.services())


def _services(stack_file: StackFile) -> dict[str, Any]:
    return dict(stack_file.spec["services"])


def test_docker_stack_config_accepts_it(stack_file: StackFile, tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(stack_file.spec))
    done = subprocess.run(
        ["docker", "stack", "config", "--compose-file", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Ignoring unsupported options" not in done.stderr, done.stderr


def test_every_service_has_swarm_update_rollback_and_restart_rules(stack_file: StackFile) -> None:
    for name, service in _services(stack_file).items():
        assert not {"build", "depends_on", "restart", "security_opt"} & set(service), name
        deploy = service["deploy"]
        if name in JOBS:
            assert deploy["mode"] == "replicated-job", name
            continue
        assert deploy["endpoint_mode"] == "dnsrr", name
        update, rollback = deploy["update_config"], deploy["rollback_config"]
        assert update["failure_action"] == "rollback" and update["monitor"], name
        assert rollback["order"] in {"start-first", "stop-first"}, name
        assert deploy["restart_policy"]["condition"] == "any", name
        assert deploy["resources"]["limits"]["memory"], name
        assert update["order"] == ("stop-first" if name in STOP_FIRST else "start-first"), name
        if name in STATEFUL:  # pinned to the node that holds its volume
            (constraint,) = deploy["placement"]["constraints"]
            assert constraint.startswith("node.labels.coach."), name


def test_images_are_pinned_references_and_the_app_image_is_the_built_one(
    stack_file: StackFile,
) -> None:
    for name, service in _services(stack_file).items():
        image = service["image"]
        if name in {"migrate", "backend", "celery-worker", "celery-beat"}:
            assert image == APP_IMAGE
        else:
            assert ":" in image.rsplit("/", 1)[-1] and "/" in image, (name, image)


def test_secrets_and_config_files_become_swarm_objects(stack_file: StackFile) -> None:
    spec = stack_file.spec
    by_name = {o.name: o for o in stack_file.objects}
    for key, secret in spec["secrets"].items():
        assert secret["external"] is True and secret["name"] in by_name, key
        assert by_name[secret["name"]].kind == "secret"
    for key, config in spec["configs"].items():
        assert by_name[config["name"]].kind == "config", key
    for name, service in _services(stack_file).items():
        assert all(v["type"] != "bind" for v in service.get("volumes", [])), name
    nginx_targets = {c["target"] for c in _services(stack_file)["nginx"]["configs"]}
    assert "/etc/nginx/nginx.conf" in nginx_targets
    assert "/etc/nginx/templates/tls.conf.template" in nginx_targets
    prometheus_targets = {c["target"] for c in _services(stack_file)["prometheus"]["configs"]}
    assert "/etc/prometheus/rules/alerts.yml" in prometheus_targets
    # Under Swarm, Prometheus finds the app's replicas as tasks.<service>: its own config.
    assert "/etc/prometheus/prometheus.swarm.yml" in prometheus_targets
    command = _services(stack_file)["prometheus"]["command"]
    assert command[0] == "--config.file=/etc/prometheus/prometheus.swarm.yml"
    qdrant = {s["source"]: s["target"] for s in _services(stack_file)["qdrant"]["secrets"]}
    assert qdrant["qdrant_config"] == "/qdrant/config/local.yaml"
    assert {s["source"] for s in _services(stack_file)["nginx"]["secrets"]} == {
        "tls_cert",
        "tls_key",
    }


def test_networks_are_overlays_and_data_stays_internal(stack_file: StackFile) -> None:
    networks = stack_file.spec["networks"]
    assert {n["driver"] for n in networks.values()} == {"overlay"}
    assert networks["app"].get("internal") is True
    assert networks["observability"].get("internal") is True
    assert not networks["edge"].get("internal")
    ports = _services(stack_file)["nginx"]["ports"]
    assert {p["target"] for p in ports} == {8080, 8443}
    assert {p["mode"] for p in ports} == {"host"}
    published = [s for s, spec in _services(stack_file).items() if spec.get("ports")]
    assert published == ["nginx"]
    # nginx's upstream name, and the one the backend trusts forwarded headers from, exists on
    # the edge network only: the stack file keeps that alias.
    backend_networks = _services(stack_file)["backend"]["networks"]
    assert backend_networks["edge"] == {"aliases": ["backend-edge"]}
    assert set(backend_networks) == {"app", "edge", "egress", "observability"}
