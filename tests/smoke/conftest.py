"""The smoke suite brings the real compose stack up with `invoke up`'s own code, under a
project name and ports of its own (a developer's `coach` stack is never touched), and removes
it with its volumes afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.compose import ComposeStack, compose_stack

SmokeStack = ComposeStack  # the name the smoke tests annotate with


@pytest.fixture(scope="session")
def smoke(docker_host: None) -> Iterator[SmokeStack]:
    with compose_stack("coach-smoke") as stack:
        if not stack.result.ok:
            pytest.fail(f"stack not healthy: {stack.failures()}")
        yield stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.docker)
