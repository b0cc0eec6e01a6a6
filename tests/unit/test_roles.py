"""Service roles from compose labels (ops/stack/roles.py), and the guard that keeps service
names out of ops/: adding a service is a compose edit, never a list in the tooling to update.
Static: the compose files are read as YAML (the rendered configs: test_compose_roles.py)."""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest

from ops.errors import StackError
from ops.paths import COMPOSE_DIR, ROOT
from ops.stack import roles
from tests.unit.test_compose_static import image_var, load

COMPOSE_FILES = sorted(p.name for p in COMPOSE_DIR.glob("docker-compose*.yml"))
SERVICE_NAMES = frozenset(
    name for file in COMPOSE_FILES for name in (load(file).get("services") or {})
)

# (file under ops/, string literal) -> why it may name a service. Each one is a name that is
# something else too (a user, an image recipe, a part of a backup), or code owned elsewhere
# that should ask ops.stack.roles; an entry that no longer matches fails, so the list shrinks.
ALLOWED: dict[tuple[str, str], str] = {
    ("ops/data/target.py", "postgres"): "the postgres image's default POSTGRES_USER",
    ("ops/data/backup.py", "postgres"): "progress step of a backup (its database part)",
    ("ops/data/backup.py", "qdrant"): "progress step of a backup (its Qdrant snapshot)",
    ("ops/data/manifest.py", "qdrant"): "directory inside a backup: the backup format",
    **{
        ("ops/images/bake.py", recipe): "a Debian stand-in image recipe, named after its image"
        for recipe in (
            "postgres",
            "redis",
            "nginx",
            "prometheus",
            "alertmanager",
            "postgres-exporter",
            "redis-exporter",
            "nginx-exporter",
            "node-exporter",
            "blackbox-exporter",
        )
    },
    # The service `backup` (production's scheduled backups) shares the word with these.
    ("ops/cli/data.py", "backup"): "the name of the `invoke backup` command",
    ("ops/stack/roles.py", "backup"): "the role coach.role=backup, not the service",
    ("ops/stack/upgrade.py", "backup"): "the name of an upgrade step (the backup taken first)",
    ("ops/stack/secrets.py", "prometheus"): (
        "the issuer claim of MinIO's metrics token, as `mc admin prometheus generate` sets it"
    ),
}


def service(role: str | None, **extra: str) -> dict[str, Any]:
    """A service's model with coach.role and coach.<extra> labels (image_var: coach.image-var)."""
    labels = {"coach.role": role} if role else {}
    return {"labels": labels | {f"coach.{k.replace('_', '-')}": v for k, v in extra.items()}}


def test_every_service_of_the_compose_files_has_a_known_role() -> None:
    base = load("docker-compose.yml")["services"]
    # The other files add to services defined here; the few defined in one of them only (the
    # production file's scheduled backups) carry their labels there.
    elsewhere = {
        name: spec
        for file in COMPOSE_FILES
        for name, spec in (load(file).get("services") or {}).items()
        if name not in base and "labels" in spec
    }
    assert set(base) | set(elsewhere) == SERVICE_NAMES, "a service defined without labels"
    found = roles.roles_of({"services": base | elsewhere})
    assert set(found) == SERVICE_NAMES


def test_a_service_without_a_role_or_with_an_unknown_one_is_named() -> None:
    config = {"services": {"backend": service("writer"), "newcomer": {}, "odd": service("cook")}}
    with pytest.raises(StackError, match=r"newcomer \(no coach\.role\), odd \(coach\.role=cook\)"):
        roles.writers(config)
    with pytest.raises(StackError, match="newcomer"):
        roles.fallbacks({"services": {"newcomer": {"labels": ["coach.fallback=optional"]}}})


def test_labels_as_a_list_or_a_map() -> None:
    listed = {"services": {"a": {"labels": ["coach.role=one-shot", "coach.app=true"]}}}
    assert roles.one_shot(listed) == ["a"] and roles.app_services(listed) == ["a"]
    assert roles.labels({"labels": {"x": None}}) == {"x": ""}


def test_store_and_settings_need_exactly_one_service() -> None:
    config = {
        "services": {
            "db": service("data", store="database"),
            "db2": service("data", store="database"),
            "app": service("writer", settings="true"),
        }
    }
    with pytest.raises(StackError, match=r"2 services labelled coach\.store=database \(db, db2\)"):
        roles.store_service(config, "database")
    with pytest.raises(StackError, match=r"0 services labelled coach\.store=vectors"):
        roles.store_service(config, "vectors")
    assert roles.settings_service(config) == "app"
    config["services"]["db"] = service("data", store="tape")
    with pytest.raises(StackError, match=r"unknown coach\.store=tape"):
        roles.store_of(config, "db")


def test_fallbacks_group_services_by_image_and_refuse_half_labels() -> None:
    config = {
        "services": {
            "s3": service("data", fallback="local-stores", image_var="S3_IMAGE"),
            "s3-init": service("one-shot", fallback="local-stores", image_var="S3_IMAGE"),
            "ui": service("observability", fallback="optional", image_var="UI_IMAGE"),
        }
    }
    assert roles.fallbacks(config) == {
        "S3_IMAGE": (("s3", "s3-init"), "local-stores"),
        "UI_IMAGE": (("ui",), "optional"),
    }
    config["services"]["ui"] = service("observability", fallback="optional")
    with pytest.raises(StackError, match=r"ui: coach\.fallback=optional needs coach\.image-var"):
        roles.fallbacks(config)
    config["services"]["ui"] = service("observability", fallback="optional", image_var="S3_IMAGE")
    with pytest.raises(StackError, match=r"disagree on coach\.fallback"):
        roles.fallbacks(config)


def test_build_targets_one_service_per_built_image_and_otlp_endpoint() -> None:
    app = {"image": "coach/app:local", "build": {"context": "."}}
    config = {
        "services": {
            "worker": app | service("writer", app="true"),
            "api": app | service("writer", app="true"),
            "traces": {"image": "j"} | service("observability", otlp_port="4318"),
        }
    }
    assert roles.build_targets(config) == ["api"]
    assert roles.app_image(config) == "coach/app:local"
    assert roles.otlp_endpoint(config, []) == "http://traces:4318"
    assert roles.otlp_endpoint(config, ["traces"]) is None


def test_image_var_labels_name_the_services_own_image_variable() -> None:
    for name, spec in load("docker-compose.yml")["services"].items():
        var = roles.labels(spec).get(roles.IMAGE_VAR)
        if var is not None:
            assert var == image_var(spec), name


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_no_service_name_is_hard_coded_in_ops() -> None:
    # A name as a whole string, or as the host of a URL ("http://jaeger:4318").
    as_host = re.compile(r"://(" + "|".join(map(re.escape, SERVICE_NAMES)) + r")[:/]")
    hits: set[tuple[str, str]] = set()
    where: dict[tuple[str, str], int] = {}
    for path in sorted((ROOT / "ops").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), relative)
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            if id(node) not in skip and (node.value in SERVICE_NAMES or as_host.search(node.value)):
                hits.add((relative, node.value))
                where.setdefault((relative, node.value), node.lineno)
    unexplained = sorted(hits - ALLOWED.keys())
    assert not unexplained, "service names in ops/ (ask ops.stack.roles instead): " + ", ".join(
        f"{file}:{where[(file, value)]} {value!r}" for file, value in unexplained
    )
    assert not ALLOWED.keys() - hits, f"allowed but gone, drop: {sorted(ALLOWED.keys() - hits)}"
