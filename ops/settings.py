"""Settings of the operations tooling, read from the environment (prefix ``COACH_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OpsSettings(BaseSettings):
    """Knobs an operator may need on a host; the defaults suit a connected Debian machine."""

    model_config = SettingsConfigDict(env_prefix="COACH_", extra="ignore")

    registry_mirror: str | None = Field(
        default=None,
        description="Prefix prepended to a full image reference, e.g. 'm.daocloud.io' "
        "pulls docker.io/library/postgres:17 as m.daocloud.io/docker.io/library/postgres:17.",
    )
    registry_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Per-registry host map, 'docker.io=docker.m.daocloud.io,quay.io=quay.m...'.",
    )
    pull: Literal["auto", "never"] = Field(
        default="auto",
        description="'never' skips registry pulls (air-gapped hosts): local, then baked images.",
    )
    pull_stall_timeout: float = Field(
        default=120.0,
        gt=0,
        description="Seconds a pull may go without progress (no byte, no new layer event) "
        "before it is given up; a slow pull that keeps moving is never cut off.",
    )
    pull_parallel: int = Field(default=3, ge=1, le=16, description="Images pulled at once.")
    debian_mirror: str | None = Field(
        default=None,
        description="Debian archive URL for baked images; default: the host's APT sources.",
    )
    build_ca_bundle: Path | None = Field(
        default=None,
        description="Extra CA bundle (PEM) that builds trust for PyPI, e.g. behind a "
        "TLS-intercepting proxy; passed as a BuildKit secret, never stored in a layer.",
    )
    pypi_mirror: str | None = Field(
        default=None,
        pattern=r"^(https?://\S+)?$",  # empty counts as unset, as in ./run and the Dockerfile
        description="PyPI simple index for uv and the locked packages in image builds (and "
        "./run), e.g. 'https://pypi.tuna.tsinghua.edu.cn/simple'; hashes still from uv.lock.",
    )
    engine_timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for dockerd.")
    doctor_fake_free_disk_bytes: int | None = Field(
        default=None,
        ge=0,
        description="For drills and tests only: `invoke doctor` reports this many bytes free "
        "under the engine's data-root instead of measuring it.",
    )
    # Off-site copies of backups (ops/data/offsite.py): a destination with credentials of its
    # own, never the app's S3 ones; the secret key only ever in a file.
    backup_offsite: bool = Field(
        default=False,
        description="Copy every backup `invoke backup` makes off-site (as --offsite does).",
    )
    offsite_url: str | None = Field(
        default=None,
        pattern=r"^(s3://[^/\s]+(/\S*)?)?$",
        description="Where off-site copies go: s3://BUCKET/PREFIX; a backup lands under "
        "PREFIX/<backup name>/.",
    )
    offsite_endpoint_url: str | None = Field(
        default=None,
        pattern=r"^(https?://\S+)?$",
        description="S3 endpoint of the off-site store (MinIO, Ceph...); default: AWS S3.",
    )
    offsite_region: str = Field(default="us-east-1", description="Region of the off-site store.")
    offsite_access_key_id: str | None = Field(
        default=None, description="Access key id of the off-site store (not the app's)."
    )
    offsite_secret_key_file: Path | None = Field(
        default=None,
        description="File holding the off-site store's secret access key. Without key id and "
        "file, the store's ambient credentials (an instance role) are used.",
    )
    backup_age_recipient: str | None = Field(
        default=None,
        pattern=r"^(age1[02-9ac-hj-np-z]{58})?$",
        description="age public key (age1...): every off-site object is encrypted to it.",
    )
    backup_age_recipients_file: Path | None = Field(
        default=None,
        description="File of age public keys, one a line ('#' comments): encrypted to each.",
    )
    backup_age_identity_file: Path | None = Field(
        default=None,
        description="age identity (private key) file that decrypts fetched off-site copies; "
        "kept off the backup host, brought only to restore.",
    )

    # Scheduled backups (ops/data/scheduled.py, the production stack's `backup` service).
    backup_schedule: str = Field(
        default="03:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="When the backup service backs up: daily at this UTC time (HH:MM).",
    )
    backup_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Back up every this many seconds instead (tests, hourly backups); "
        "empty: daily at COACH_BACKUP_SCHEDULE.",
    )
    backup_keep_daily: int = Field(
        default=7,
        ge=1,
        description="Scheduled retention: the newest backup of each of this "
        "many newest days is kept (`-pre-restore` safety copies are not counted).",
    )
    backup_keep_weekly: int = Field(
        default=4, ge=0, description="... and the newest of each of this many newest ISO weeks."
    )
    backup_dir: Path | None = Field(
        default=None,
        description="Where the backup service writes (in its container: the bind mount of "
        "the host's backups directory); default: the project's ./backups.",
    )
    backup_metrics_port: int = Field(
        default=9110, ge=1, le=65535, description="Where the backup service serves /metrics."
    )

    @field_validator(
        "backup_interval_seconds", "backup_dir", "offsite_secret_key_file", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes ${VAR:-} through as an empty string: that means "not set".
        return None if value == "" else value

    @field_validator("registry_map", mode="before")
    @classmethod
    def _parse_map(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = [item.strip() for item in value.split(",") if item.strip()]
        parsed: dict[str, str] = {}
        for pair in pairs:
            registry, sep, host = pair.partition("=")
            if not sep or not registry.strip() or not host.strip():
                raise ValueError(f"expected REGISTRY=HOST, got {pair!r}")
            parsed[registry.strip()] = host.strip().rstrip("/")
        return parsed


@lru_cache(maxsize=1)
def get_settings() -> OpsSettings:
    return OpsSettings()
