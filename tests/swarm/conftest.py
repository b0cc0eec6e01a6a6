"""A one-node swarm on this engine and the production stack deployed on it by the code of
`invoke swarm.deploy`, under a stack name, port and volumes of its own; removed afterwards
(and the swarm left, when these tests created it)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ops.paths import COMPOSE_DIR
from ops.proc import run
from ops.stack import keys, secrets
from ops.swarm import cluster
from tests.support import apikeys
from tests.support.processes import free_port

STACK = "coach-swarm-test"


@dataclass
class SwarmStack:
    name: str
    base_url: str
    secrets_dir: Path
    overrides: tuple[tuple[str, str], ...]
    first: cluster.DeployResult
    api_key: str = ""  # made when the stack is up: production has no dev key

    def client(self, timeout: float = 15) -> httpx.Client:
        return apikeys.client(self.base_url, self.api_key, timeout)

    def key_runner(self) -> keys.Runner:
        """The app's key command in a running backend task (Swarm has no `compose exec`)."""
        found = run(
            ["docker", "ps", "--quiet", "--filter", "status=running", "--filter",
             f"label=com.docker.swarm.service.name={self.name}_backend"],
            capture=True,
            quiet=True,
        ).stdout.split()  # fmt: skip
        assert found, f"no running backend task of {self.name}"
        return keys.in_container(found[0])

    def deploy(self, app_image: str | None = None) -> cluster.DeployResult:
        return cluster.deploy(self.name, app_image=app_image, overrides=self.overrides, timeout=420)


@pytest.fixture(scope="session")
def one_node_swarm(docker_host: None) -> Iterator[None]:
    created = cluster.init("127.0.0.1")
    try:
        yield
    finally:
        if created:
            cluster.leave()


@pytest.fixture(scope="session")
def swarm_stack(
    one_node_swarm: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SwarmStack]:
    root = tmp_path_factory.mktemp("swarm")
    secrets.generate("prod", root=root)
    env_file = root / ".env.prod"
    shutil.copy(COMPOSE_DIR / ".env.prod.example", env_file)
    env_file.write_text(
        env_file.read_text().replace("LLM_BASE_URL=https://api.openai.com/v1", "LLM_BASE_URL=")
    )
    port = free_port()
    overrides = (
        ("SECRETS_DIR", str(root / "prod")),
        ("PROD_ENV_FILE", str(env_file)),
        ("HTTP_PORT", str(port)),
        ("SWARM_UPDATE_MONITOR", "10s"),  # the production default is 30s
    )
    _remove(STACK)  # leftovers of a killed run
    try:
        first = cluster.deploy(STACK, overrides=overrides, timeout=420)
        assert first.ok, first.failed
        print(f"swarm stack healthy after {first.seconds:.1f}s")
        stack = SwarmStack(STACK, f"http://127.0.0.1:{port}", root / "prod", overrides, first)
        stack.api_key = apikeys.make_key(stack, "swarm-test", "write")
        yield stack
    finally:
        _remove(STACK)


def _remove(stack: str) -> None:
    if cluster.swarm_state() != "active":
        return
    volumes = cluster.remove(stack)
    if volumes:
        run(["docker", "volume", "rm", *volumes], capture=True, check=False, quiet=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.docker)
