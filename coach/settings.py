"""All application settings, in one place.

Every value comes from the environment, or from a file named by `<NAME>_FILE` (Docker and Swarm
secrets), never from code. What is left unset selects the embedded mode: SQLite instead of
PostgreSQL, eager tasks instead of Redis and Celery, Qdrant's local mode, a local object
directory, an offline embedder and an extractive "LLM" — the same API on one process.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, computed_field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from coach import __version__

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "changethis", "password", "secret", "admin"}
LANGUAGES = (
    "python", "javascript", "typescript", "go", "rust", "java", "kotlin", "c", "cpp", "csharp",
    "ruby", "php", "swift", "scala", "shell", "sql", "html", "css", "yaml", "json", "markdown",
    "text",
)  # fmt: skip
LOG_LEVEL_NAMES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# PostgreSQL role names the migrate step creates: plain identifiers, never quoted oddities.
ROLE_NAME = r"^[a-z_][a-z0-9_]{0,62}$"


class FileEnvSource(PydanticBaseSettingsSource):
    """`NAME_FILE=/run/secrets/x` supplies NAME from that file (trailing newline dropped).

    Setting both NAME and NAME_FILE is an error, as in the official postgres image: silently
    preferring one hides a misconfiguration.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = field_name.upper()
        path = os.environ.get(f"{name}_FILE")
        if not path:
            return None, field_name, False
        if os.environ.get(name):
            raise ValueError(f"both {name} and {name}_FILE are set; set only one")
        try:
            return Path(path).read_text().rstrip("\r\n"), field_name, False
        except OSError as exc:
            raise ValueError(f"{name}_FILE={path}: {exc.strerror}") from exc

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    # Identity
    environment: Literal["development", "test", "production"] = "development"
    service_name: str = Field(default="coach-backend", description="Role: backend/worker/beat.")
    version: str = Field(default=__version__, alias="APP_VERSION")

    # HTTP edge
    api_docs_enabled: bool | None = Field(
        default=None,
        description="Swagger UI at /api/v1/docs; unset: on, except with ENVIRONMENT=production.",
    )
    trusted_proxies: str = Field(
        default="127.0.0.1,::1",
        description="Peers whose X-Forwarded-For/-Proto gunicorn believes: IPs and CIDRs, or a "
        "host name standing for the subnets of this container's networks it resolves on "
        "(backend/forwarded.py).",
    )

    # PostgreSQL (unset host: embedded SQLite)
    postgres_host: str | None = None
    postgres_port: int = 5432
    postgres_user: str = "coach"
    postgres_password: SecretStr = SecretStr("")
    postgres_db: str = "coach"
    # Least privilege (coach/dbroles.py), read by the migrate step only, which connects as the
    # bootstrap superuser: with an app password set it keeps three roles up to date, the
    # schema's owner (no login; migrations run as it), the app's login (rows only) and the
    # exporter's (pg_monitor). Unset: one role does everything, as in the embedded mode.
    postgres_owner_role: str = Field(default="coach_owner", pattern=ROLE_NAME)
    postgres_app_user: str = Field(default="coach_app", pattern=ROLE_NAME)
    postgres_app_password: SecretStr = SecretStr("")
    postgres_exporter_user: str = Field(default="coach_exporter", pattern=ROLE_NAME)
    postgres_exporter_password: SecretStr = SecretStr("")
    db_pool_size: int = Field(default=5, ge=1, le=100)
    db_connect_timeout: float = Field(default=3.0, gt=0)

    # Redis: Celery broker and result backend (unset host: tasks run eagerly in-process)
    redis_host: str | None = None
    redis_port: int = 6379
    # An ACL user (the stack's is "app", not allowed CONFIG, FLUSHALL and the other dangerous
    # commands); empty: Redis' default user.
    redis_user: str = ""
    redis_password: SecretStr = SecretStr("")
    redis_db: int = Field(default=0, ge=0, le=15)

    # Qdrant (unset URL: local mode in data_dir)
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr = SecretStr("")
    qdrant_collection: str = Field(default="snippet_chunks", pattern=r"^[a-zA-Z0-9_-]{1,64}$")

    # Object store: any S3 endpoint (MinIO, RustFS, AWS), or a local directory when unset
    s3_endpoint_url: str | None = None
    s3_bucket: str = "coach-snippets"
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")

    # Embeddings: offline hashing (default) or an OpenAI-compatible /v1/embeddings
    embedding_provider: Literal["hashing", "openai"] = "hashing"
    embedding_model: str = "text-embedding-3-small"
    embedding_dim: int = Field(default=256, ge=8, le=4096)

    # LLM: OpenAI-compatible chat completions, or offline extractive answers (no key set)
    llm_base_url: str | None = None
    llm_api_key: SecretStr = SecretStr("")
    llm_model: str = "gpt-4o-mini"
    llm_provider_name: str = Field(
        default="openai",
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        description="gen_ai.provider.name of the API at LLM_BASE_URL on spans and metrics "
        "(azure.ai.openai, deepseek, groq, mistral_ai, ...): many speak OpenAI's protocol.",
    )
    llm_timeout: float = Field(default=30.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    ask_timeout: float = Field(
        default=55.0, gt=0, description="Seconds the API waits for the agent (below nginx's 60)."
    )
    llm_max_tokens: int = Field(
        default=1024,
        ge=16,
        le=65536,
        description="max_tokens of every chat completion: the longest answer paid for.",
    )
    ask_max_waiting: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="Asks one backend process waits for at once; the next gets 503 and "
        "Retry-After at once.",
    )
    llm_health_cache_seconds: float = Field(default=60.0, ge=0)

    # Limits
    max_snippet_bytes: int = Field(default=256 * 1024, ge=1024)
    chunk_lines: int = Field(default=40, ge=5)
    chunk_overlap: int = Field(default=8, ge=0)
    chunk_max_bytes: int = Field(
        default=4096,
        ge=256,
        description="Largest chunk in UTF-8 bytes: a longer window is split, a longer line cut.",
    )
    prompt_max_bytes: int = Field(
        default=32768,
        ge=1024,
        description="Largest prompt sent to the LLM: the excerpts that would pass it are left out.",
    )
    daily_token_budget: int = Field(
        default=500_000,
        ge=0,
        description="Tokens (prompt + completion) one API key may use per UTC day; 0: unlimited.",
    )
    clock_offset_seconds: float = Field(
        default=0.0,
        description="For tests and drills only: shifts the clock the daily budget reads "
        "(which UTC day it is).",
    )
    question_retention_days: int = Field(default=90, ge=1)
    orphan_object_min_age: int = Field(
        default=3600,
        ge=300,
        description="Seconds an object under snippets/ must be old, with no snippet row, before "
        "coach.remove_orphan_objects deletes it (an upload stores its object before its row).",
    )
    orphan_object_sweep_hours: int = Field(
        default=1, ge=1, le=24, description="Hours between runs of coach.remove_orphan_objects."
    )

    # Worker
    task_time_limit: int = Field(default=300, ge=10)
    max_task_deliveries: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Deliveries of one index message whose worker dies each time; the next one "
        "marks the snippet failed and drops the message (a poison message).",
    )
    worker_heartbeat_file: Path = Path("/tmp/coach-worker.heartbeat")  # noqa: S108 - tmpfs by design
    beat_lock_ttl: int = Field(default=60, ge=3, description="Seconds a dead beat's lock lasts.")
    index_lease_ttl: int = Field(
        default=30,
        ge=3,
        le=300,
        description="Seconds an index task's lease on its snippet lasts unless renewed (every "
        "third of it while the task runs): a killed worker's snippets are re-sent once it "
        "lapses (worker/redelivery.py).",
    )
    index_test_delay: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="For tests and drills only: seconds an index task waits, holding its lease "
        "with the snippet marked indexing, before it indexes (keeps tasks in flight).",
    )
    startup_wait: float = Field(
        default=90.0,
        ge=0,
        description="Seconds migrate and the backend wait at start for the database and the "
        "schema (under Swarm nothing orders the services).",
    )

    # API keys
    api_key_bootstrap_file: Path | None = Field(
        default=None,
        description="A file holding one API key: `migrate` (and the embedded app at start) "
        "registers it for tenant 'dev' with scope write if it is not known yet.",
    )

    # Embedded-mode data (SQLite, Qdrant local files, objects)
    data_dir: Path = Path(".state/embedded")
    stores_degraded: str = Field(
        default="",
        pattern=r"^([a-z]+(,[a-z]+)*)?$",
        description="stores production runs locally, e.g. vectors,objects (set by `up --prod "
        '--allow-local-stores`): /health says degraded, coach_degraded{reason="local_stores"} 1',
    )

    # Observability. Tracing also reads the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT,
    # OTEL_TRACES_SAMPLER, OTEL_METRIC_EXPORT_INTERVAL, ...) itself; without an OTLP endpoint no
    # span and no OpenTelemetry metric leaves the process.
    observability_enabled: bool = Field(
        default=True, description="false: no tracing instrumentation, no HTTP metrics middleware"
    )
    revision: str = Field(default="unknown", alias="APP_REVISION")
    log_level: str = "INFO"
    log_levels: str = Field(
        default="", description="per logger: sqlalchemy.engine=INFO,celery=DEBUG"
    )
    log_format: Literal["json", "console"] = Field(
        default="json", description="console: coloured lines for local development only"
    )
    log_file: Path | None = Field(default=None, description="also write JSON lines here, rotated")
    log_file_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    log_file_backup_count: int = Field(default=5, ge=0)
    log_retention_days: float = Field(
        default=14.0, gt=0, description="coach.clean_logs: rotated files older than this go"
    )
    log_max_total_bytes: int = Field(
        default=500 * 1000 * 1000,
        ge=0,
        description="coach.clean_logs: then the oldest rotated files go until all fit",
    )
    worker_metrics_port: int = Field(default=9808, ge=0, le=65535, description="0: no endpoint")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(env_settings, EnvSettingsSource)
        return (init_settings, env_settings, FileEnvSource(settings_cls))

    @field_validator("llm_base_url", "qdrant_url", "s3_endpoint_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVEL_NAMES:
            raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVEL_NAMES)}")
        return level

    @field_validator("log_levels")
    @classmethod
    def _known_logger_levels(cls, value: str) -> str:
        parse_logger_levels(value)  # a typo fails at start-up, not silently at the first log line
        return value

    @field_validator("log_file", "api_key_bootstrap_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment != "production":
            return self
        used = {
            "POSTGRES_PASSWORD": (self.postgres_host, self.postgres_password),
            "REDIS_PASSWORD": (self.redis_host, self.redis_password),
            "S3_SECRET_ACCESS_KEY": (self.s3_endpoint_url, self.s3_secret_access_key),
        }
        weak = [
            name
            for name, (enabled, secret) in used.items()
            if enabled and secret.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS
        ]
        if weak:
            raise ValueError(
                f"placeholder or empty secret(s) in production: {', '.join(weak)}; "
                "generate real ones (`invoke secrets.generate`)"
            )
        return self

    @model_validator(mode="after")
    def _roles_are_distinct(self) -> Settings:
        if not self.postgres_app_password.get_secret_value():
            return self
        kept = [self.postgres_owner_role, self.postgres_app_user, self.postgres_exporter_user]
        if len({self.postgres_user, *kept}) != 4:
            raise ValueError(
                "POSTGRES_USER (the superuser migrate connects as), POSTGRES_OWNER_ROLE, "
                "POSTGRES_APP_USER and POSTGRES_EXPORTER_USER must be four different roles"
            )
        return self

    @model_validator(mode="after")
    def _chunking_makes_progress(self) -> Settings:
        if self.chunk_overlap >= self.chunk_lines:
            raise ValueError("CHUNK_OVERLAP must be smaller than CHUNK_LINES")
        if self.prompt_max_bytes <= self.chunk_max_bytes:
            raise ValueError("PROMPT_MAX_BYTES must be larger than CHUNK_MAX_BYTES")
        return self

    # Derived values
    @computed_field  # type: ignore[prop-decorator]
    @property
    def embedded(self) -> bool:
        return self.postgres_host is None

    @property
    def serve_api_docs(self) -> bool:
        if self.api_docs_enabled is None:
            return self.environment != "production"
        return self.api_docs_enabled

    @property
    def database_url(self) -> str:
        if self.postgres_host is None:
            return f"sqlite+aiosqlite:///{self.data_dir / 'coach.db'}"
        from sqlalchemy.engine import URL  # noqa: PLC0415 - keep settings import light

        return URL.create(
            "postgresql+asyncpg",
            username=self.postgres_user,
            password=self.postgres_password.get_secret_value() or None,
            host=self.postgres_host,
            port=self.postgres_port,
            database=self.postgres_db,
        ).render_as_string(hide_password=False)

    @property
    def redis_url(self) -> str | None:
        if self.redis_host is None:
            return None
        password = self.redis_password.get_secret_value()
        user = quote(self.redis_user, safe="")
        auth = f"{user}:{quote(password, safe='')}@" if password or user else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @property
    def llm_provider(self) -> Literal["openai", "extractive"]:
        return "openai" if self.llm_base_url else "extractive"

    @property
    def logger_levels(self) -> dict[str, str]:
        return parse_logger_levels(self.log_levels)

    def masked(self) -> dict[str, Any]:
        """Effective settings for display: secrets shown as '**********' (or empty)."""
        shown = self.model_dump(mode="json", by_alias=False)
        for name, value in self:
            if isinstance(value, SecretStr):
                shown[name] = "**********" if value.get_secret_value() else ""
        return shown


def parse_logger_levels(spec: str) -> dict[str, str]:
    """LOG_LEVELS `sqlalchemy.engine=INFO, celery=debug` -> {logger name: level name}."""
    levels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, level = (s.strip() for s in item.partition("="))
        if not sep or not name or level.upper() not in LOG_LEVEL_NAMES:
            raise ValueError(
                f"LOG_LEVELS entry {item!r}: expected logger=LEVEL with LEVEL one of "
                f"{', '.join(LOG_LEVEL_NAMES)}"
            )
        levels[name] = level.upper()
    return levels


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
