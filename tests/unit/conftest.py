"""Unit tests run the whole application in embedded mode: SQLite, Qdrant local mode, a local
object directory and eager tasks, in a temporary directory per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from coach.settings import get_settings
from tests.support.embedded import EMBEDDED_ENV_KEYS, create_key, keyed_client


@pytest.fixture
def embedded_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in EMBEDDED_ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MAX_SNIPPET_BYTES", str(64 * 1024))
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


@pytest.fixture
def client(embedded_env: Path) -> Iterator[TestClient]:
    """The embedded app, called with its dev key (tenant "dev", scope write) by default."""
    from backend.app import create_app  # noqa: PLC0415 - after the environment is set

    with keyed_client(create_app(get_settings()), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def make_key(client: TestClient) -> Callable[[str, str], str]:
    """make_key(tenant, scope) -> a new key for `client`'s app."""
    return partial(create_key, client)
