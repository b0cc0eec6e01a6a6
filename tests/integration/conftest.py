from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from coach.settings import Settings
from tests.support.containers import image_or_skip
from tests.support.stack import VARIANTS, Stack, stack


@pytest.fixture(autouse=True, scope="session")
def _engine(docker_host: None) -> None:
    """Every integration test needs the engine; provisioning it is the fixture's job."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="module", params=VARIANTS)
def app_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, _engine: None
) -> Iterator[Stack]:
    """The application against real PostgreSQL and Redis; the id says which vector and object
    stores (see tests/support/stack.py)."""
    variant = str(request.param)
    if variant == "upstream-images":
        for var in ("QDRANT_IMAGE", "MINIO_IMAGE"):
            image_or_skip(var)
    with stack(variant, tmp_path_factory.mktemp(variant)) as running_stack:
        yield running_stack


@pytest.fixture
def settings(app_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The stack's settings, as its processes read them."""
    for key, value in app_stack.env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture
def broker(settings: Settings) -> Iterator[redis.Redis]:
    """The stack's Redis, as the broker the app's processes use."""
    assert settings.redis_url
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()
