"""Settings: one place, environment or *_FILE secrets, and production refuses placeholders."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from coach import __main__ as cli
from coach.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (
        "POSTGRES_HOST",
        "POSTGRES_PASSWORD",
        "POSTGRES_PASSWORD_FILE",
        "REDIS_HOST",
        "REDIS_PASSWORD",
        "ENVIRONMENT",
        "S3_ENDPOINT_URL",
        "LLM_API_KEY",
    ):
        monkeypatch.delenv(key, raising=False)


def test_nothing_set_means_embedded_mode() -> None:
    settings = Settings()
    assert settings.embedded and settings.redis_url is None
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.llm_provider == "extractive"


def test_secrets_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pg"
    secret.write_text("s3cr3t/with:chars@\n")
    monkeypatch.setenv("POSTGRES_HOST", "postgres")
    monkeypatch.setenv("POSTGRES_PASSWORD_FILE", str(secret))
    settings = Settings()
    assert settings.postgres_password.get_secret_value() == "s3cr3t/with:chars@"
    assert (
        settings.database_url
        == "postgresql+asyncpg://coach:s3cr3t%2Fwith%3Achars%40@postgres:5432/coach"
    )


def test_value_and_file_together_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("a")
    monkeypatch.setenv("REDIS_PASSWORD", "b")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(tmp_path / "pw"))
    with pytest.raises(ValueError, match="both REDIS_PASSWORD and REDIS_PASSWORD_FILE"):
        Settings()


def test_missing_secret_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_PASSWORD_FILE", "/run/secrets/nope")
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD_FILE=/run/secrets/nope"):
        Settings()


@pytest.mark.parametrize("weak", ["changeme", "CHANGEME", "password", " "])
def test_production_refuses_placeholder_secrets(weak: str) -> None:
    with pytest.raises(ValidationError, match=r"placeholder or empty secret.*POSTGRES_PASSWORD"):
        Settings(environment="production", postgres_host="db", postgres_password=SecretStr(weak))


def test_production_accepts_real_secrets_and_dev_accepts_anything() -> None:
    Settings(
        environment="production", postgres_host="db", postgres_password=SecretStr("x7Gq2vLpR9")
    )
    Settings(environment="development", postgres_host="db", postgres_password=SecretStr("changeme"))


def test_chunk_overlap_must_be_smaller_than_window() -> None:
    with pytest.raises(ValidationError, match="CHUNK_OVERLAP"):
        Settings(chunk_lines=10, chunk_overlap=10)


def test_settings_command_masks_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSTGRES_PASSWORD", "visible-if-broken")
    monkeypatch.setenv("LLM_API_KEY", "sk-live-123")
    get_settings.cache_clear()
    try:
        assert cli.main(["settings"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "visible-if-broken" not in out and "sk-live-123" not in out
    assert '"postgres_password": "**********"' in out
    assert '"redis_password": ""' in out
