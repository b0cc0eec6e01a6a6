"""Compose projects for tests and benchmarks: their own name and free ports for everything the
development override publishes, so a developer's own `coach` stack is never touched."""

from __future__ import annotations

from ops.compose import Project
from tests.support.processes import free_port

PUBLISHED = (
    "HTTP_PORT",
    "DEV_POSTGRES_PORT",
    "DEV_REDIS_PORT",
    "DEV_QDRANT_PORT",
    "DEV_MINIO_PORT",
    "DEV_MINIO_CONSOLE_PORT",
    "DEV_PROMETHEUS_PORT",
    "DEV_ALERTMANAGER_PORT",
    "DEV_GRAFANA_PORT",
    "DEV_JAEGER_PORT",
)


def isolated_project(name: str, profiles: tuple[str, ...] = ()) -> tuple[Project, dict[str, int]]:
    ports = {variable: free_port() for variable in PUBLISHED}
    project = Project(
        "dev",
        profiles=profiles,
        project_name=name,
        overrides=tuple((k, str(v)) for k, v in ports.items()),
    )
    return project, ports
