from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _engine(docker_host: None) -> None:
    """Every integration test needs the engine; provisioning it is the fixture's job."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.docker)
