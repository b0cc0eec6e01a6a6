"""Suite-wide fixtures. Docker-backed tests (tests/integration, tests/smoke) get the engine
from `docker_host`, provisioned by the same code as `invoke docker.ensure`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops.host import engine as docker_engine


@pytest.fixture(scope="session")
def docker_host() -> Iterator[None]:
    """A working engine, swept of leftovers from killed runs before, and of ours after."""
    docker_engine.ensure()
    from tests.support import containers  # noqa: PLC0415 - only when an engine is wanted

    leftovers = containers.sweep()
    if leftovers:
        print(f"swept {leftovers} leftover test resources from an earlier run")
    yield
    containers.sweep(containers.RUN_ID)
