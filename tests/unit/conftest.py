"""Unit tests run the whole application in embedded mode: SQLite, Qdrant local mode, a local
object directory and eager tasks, in a temporary directory per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from coach.settings import get_settings
from tests.support.embedded import EMBEDDED_ENV_KEYS


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
    from backend.app import create_app  # noqa: PLC0415 - after the environment is set

    with TestClient(create_app(get_settings()), raise_server_exceptions=False) as test_client:
        yield test_client
