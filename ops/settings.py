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
