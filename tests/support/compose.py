"""Compose projects for tests and benchmarks: their own name and free ports for everything the
development override publishes, so a developer's own `coach` stack is never touched. And the
whole stack brought up by `invoke up`'s own code, for the suites that test it live (smoke,
acceptance)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import httpx

from ops.stack import keys
from ops.stack import up as stacks
from ops.stack.project import Project
from tests.support import apikeys
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


@dataclass
class ComposeStack:
    """A running stack: its project, what `up` reported, and its published ports."""

    project: Project
    result: stacks.UpResult
    ports: dict[str, int]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['HTTP_PORT']}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['DEV_PROMETHEUS_PORT']}"

    @cached_property
    def api_key(self) -> str:
        """The development stack's own key (tenant dev, scope write)."""
        return apikeys.dev_key(self.project)

    def client(
        self, timeout: float = 15, *, key: str | None = None, anonymous: bool = False
    ) -> httpx.Client:
        """Through nginx, as a user reaches the app: with `key`, else the stack's own;
        `anonymous`: with none."""
        return apikeys.client(self.base_url, None if anonymous else key or self.api_key, timeout)

    def key_runner(self) -> keys.Runner:
        return keys.in_project(self.project)

    def failures(self) -> str:
        return "\n".join(f"{service}: {detail}" for service, detail in self.result.failed.items())

    def log_lines(self, service: str) -> list[str]:
        """Every non-empty line the service wrote (stdout and stderr), without prefixes."""
        out = self.project.run(
            "logs", "--no-color", "--no-log-prefix", service, capture=True, quiet=True
        ).stdout
        return [line for line in out.splitlines() if line.strip()]


@contextmanager
def compose_stack(
    name: str, profiles: tuple[str, ...] = ("observability",)
) -> Iterator[ComposeStack]:
    """Up under its own project name and ports, whatever the outcome (the caller judges
    `result.ok`); always removed with its volumes afterwards."""
    project, ports = isolated_project(name, profiles)
    stacks.down(project, volumes=True)  # leftovers of a killed run
    try:
        result = stacks.up(project)
        print(
            f"stack {name} {'healthy' if result.ok else 'NOT healthy'} after {result.seconds:.0f}s"
        )
        yield ComposeStack(project, result, ports)
    finally:
        stacks.down(project, volumes=True)
