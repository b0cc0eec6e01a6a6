"""The smoke suite brings the real compose stack up with `invoke up`'s own code, under a
project name and ports of its own (a developer's `coach` stack is never touched), and removes
it with its volumes afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from ops import stack as stacks
from ops.compose import Project
from tests.support.compose import isolated_project


@dataclass
class SmokeStack:
    project: Project
    result: stacks.UpResult
    base_url: str
    prometheus_url: str

    def client(self, timeout: float = 15) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)


@pytest.fixture(scope="session")
def smoke(docker_host: None) -> Iterator[SmokeStack]:
    project, ports = isolated_project("coach-smoke", profiles=("observability",))
    stacks.down(project, volumes=True)  # leftovers of a killed run
    result = stacks.up(project)
    try:
        if not result.ok:
            pytest.fail(
                "stack not healthy: "
                + "\n".join(f"{service}: {detail}" for service, detail in result.failed.items())
            )
        print(f"stack healthy after {result.seconds:.0f}s")
        yield SmokeStack(
            project,
            result,
            f"http://127.0.0.1:{ports['HTTP_PORT']}",
            f"http://127.0.0.1:{ports['DEV_PROMETHEUS_PORT']}",
        )
    finally:
        stacks.down(project, volumes=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.docker)
