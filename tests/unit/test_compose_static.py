"""The compose files held to the facts of the official images (shared/docs UPSTREAM-IMAGES):
every healthcheck calls a tool that exists in its image, data volumes sit on the image's data
path, and every image is a pinned reference from infra/compose/.env. Static: no engine needed,
so it also guards the images that cannot be pulled here (Qdrant, MinIO, Grafana, Jaeger)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ops.images.catalog import load_images
from ops.paths import COMPOSE_DIR
from ops.stack.nginx import load_compose_file

SHELL_BUILTINS = {"exec", "printf", "echo", "test", "[", "exit", "true", "false", "export"}


@dataclass(frozen=True)
class Upstream:
    tools: frozenset[str]  # executables in the official image that a healthcheck may call
    data: str | None = None  # the image's data directory


UPSTREAM: dict[str, Upstream] = {
    "POSTGRES_IMAGE": Upstream(
        frozenset({"pg_isready", "psql", "bash", "sh"}), "/var/lib/postgresql/data"
    ),  # PG <= 17 layout
    "REDIS_IMAGE": Upstream(frozenset({"redis-cli", "sh", "grep", "cat"}), "/data"),
    "QDRANT_IMAGE": Upstream(frozenset({"bash", "head", "grep"}), "/qdrant/storage"),
    "MINIO_IMAGE": Upstream(frozenset({"mc", "curl", "sh", "cat"}), "/data"),
    "NGINX_IMAGE": Upstream(frozenset({"curl", "wget", "sh"})),
    "PROMETHEUS_IMAGE": Upstream(frozenset({"wget", "promtool", "/bin/promtool"}), "/prometheus"),
    "ALERTMANAGER_IMAGE": Upstream(frozenset({"wget", "amtool"}), "/alertmanager"),
    "GRAFANA_IMAGE": Upstream(frozenset({"curl", "wget", "bash"}), "/var/lib/grafana"),
    "JAEGER_IMAGE": Upstream(frozenset({"wget"})),
    "POSTGRES_EXPORTER_IMAGE": Upstream(frozenset({"wget"})),
    "REDIS_EXPORTER_IMAGE": Upstream(frozenset({"wget"})),
    "NGINX_EXPORTER_IMAGE": Upstream(frozenset()),  # FROM scratch: nothing to call
    # FROM quay.io/prometheus/busybox (node_exporter's and blackbox_exporter's Dockerfiles)
    "NODE_EXPORTER_IMAGE": Upstream(frozenset({"wget"})),
    "BLACKBOX_EXPORTER_IMAGE": Upstream(frozenset({"wget"})),
    "APP_IMAGE": Upstream(frozenset({"python"})),  # ours: the venv's python, no curl
}
IMAGE_VAR = re.compile(r"^\$\{(?P<var>[A-Z_]+_IMAGE)(?::?[-?][^}]*)?\}$")


load = load_compose_file  # the name these tests read as

BASE = load("docker-compose.yml")
FILES = ["docker-compose.yml", "docker-compose.override.yml", "docker-compose.prod.yml"]


def image_var(service: dict[str, Any]) -> str:
    match = IMAGE_VAR.match(str(service.get("image", "")))
    assert match, f"image {service.get('image')!r} is not a ${{..._IMAGE}} reference"
    return match["var"]


def commands(script: str) -> set[str]:
    """Executables a shell snippet runs: the first word of every command, including those
    inside $(...), after VAR=value prefixes."""
    found: set[str] = set()
    inner = re.findall(r"\$\$?\(([^()]*)\)", script)
    for sub in inner:
        found |= commands(sub)
    outer = re.sub(r"\$\$?\([^()]*\)", "SUBST", script)
    lexer = shlex.shlex(outer, posix=True, punctuation_chars="|&;()<>")
    expect = True
    for token in lexer:
        if token in {"|", "||", "&&", ";", "(", ")"}:
            expect = True
        elif expect and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
            found.add(token)
            expect = False
    return found


def healthcheck_tools(test: list[str] | str) -> set[str]:
    if isinstance(test, str):
        return commands(test)
    kind, *argv = test
    if kind == "CMD-SHELL":
        return commands(argv[0])
    tools = {argv[0]}
    if argv[0] in {"bash", "sh"} and "-c" in argv:
        tools |= commands(argv[argv.index("-c") + 1])
    return tools


SERVICES_WITH_HEALTHCHECK = [
    (name, svc)
    for name, svc in BASE["services"].items()
    if "healthcheck" in svc and not svc["healthcheck"].get("disable")
]


@pytest.mark.parametrize(
    ("name", "service"), SERVICES_WITH_HEALTHCHECK, ids=[n for n, _ in SERVICES_WITH_HEALTHCHECK]
)
def test_healthcheck_uses_only_tools_in_the_official_image(
    name: str, service: dict[str, Any]
) -> None:
    facts = UPSTREAM[image_var(service)]
    tools = healthcheck_tools(service["healthcheck"]["test"]) - SHELL_BUILTINS
    assert tools <= facts.tools, f"{name} calls {sorted(tools - facts.tools)}, absent upstream"


def test_every_long_running_service_has_a_healthcheck() -> None:
    one_shot = {"migrate", "minio-init"}
    missing = [
        name
        for name, svc in BASE["services"].items()
        if name not in one_shot and "healthcheck" not in svc and UPSTREAM[image_var(svc)].tools
    ]  # an image with no tools cannot have one
    assert missing == []


STATEFUL = [
    (name, svc)
    for name, svc in BASE["services"].items()
    if UPSTREAM[image_var(svc)].data and svc.get("restart") != "no"
]


@pytest.mark.parametrize(("name", "service"), STATEFUL, ids=[n for n, _ in STATEFUL])
def test_data_volumes_sit_on_the_image_data_path(name: str, service: dict[str, Any]) -> None:
    data = UPSTREAM[image_var(service)].data
    named = {
        str(v).split(":")[1]
        for v in service.get("volumes", [])
        if ":" in str(v) and not str(v).startswith((".", "/"))
    }
    assert data in named, f"{name}: no named volume on the image's data path {data}"


@pytest.mark.parametrize("name", FILES)
def test_every_image_is_a_pinned_reference_from_the_images_file(name: str) -> None:
    pinned = set(load_images())
    for service_name, service in load(name).get("services", {}).items():
        if "image" not in service:
            continue  # an override of a service defined in the base file
        var = image_var(service)
        if var == "APP_IMAGE":
            assert "build" in BASE["services"][service_name] or service_name in BASE["services"]
            continue
        if "build" in service:  # built here (the ops image): its name is ours, not a pin
            assert service["build"].get("target"), f"{service_name}: which Dockerfile stage?"
            continue
        assert var in pinned, f"{service_name}: {var} is not pinned in infra/compose/.env"
        assert ":?" in service["image"], f"{service_name}: a missing {var} must be an error"


def test_command_parser_sees_through_substitutions_and_pipes() -> None:
    assert commands('A="$$(cat /s)" redis-cli -h x ping | grep -q PONG') == {
        "cat",
        "redis-cli",
        "grep",
    }
    assert commands("exec 3<>/dev/tcp/h/1 && printf x >&3 && head -n1 <&3 | grep -q 200") == {
        "exec",
        "printf",
        "head",
        "grep",
    }


def test_compose_files_exist_for_dev_and_prod() -> None:
    for name in FILES:
        assert (Path(COMPOSE_DIR) / name).is_file()
