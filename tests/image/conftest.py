"""The application image, built once per session the way `invoke build` builds it, but with
a CA bundle carrying a marker: if the marker is anywhere in the image, a build secret leaked."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ops.images.build import build_ca_file
from ops.proc import run
from ops.stack import up as stacks
from ops.stack.project import Project

IMAGE = "coach/app:image-test"


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    marker: str
    size: int


@pytest.fixture(scope="session")
def app_image(docker_host: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    marker = f"coach-secret-marker-{uuid.uuid4().hex}"
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.write_text(build_ca_file().read_text() + f"\n# {marker}\n")
    project = Project(
        "dev",
        project_name="coach-image-test",
        overrides=(("BUILD_CA_FILE", str(ca)), ("APP_IMAGE", IMAGE)),
    )
    stacks.prepare(project)
    project.run("build", "backend")
    size = int(
        run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", IMAGE], capture=True, quiet=True
        ).stdout
    )
    yield BuiltImage(IMAGE, marker, size)
    run(["docker", "image", "rm", IMAGE], check=False, capture=True, quiet=True)


def inspect(ref: str) -> dict[str, object]:
    data: list[dict[str, object]] = json.loads(
        run(["docker", "image", "inspect", ref], capture=True, quiet=True).stdout
    )
    return data[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.docker)
