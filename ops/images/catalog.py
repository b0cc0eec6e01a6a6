"""The pinned image references (infra/compose/.env) and how a registry mirror rewrites them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ops.errors import ConfigError
from ops.paths import IMAGES_FILE
from ops.settings import OpsSettings

DEFAULT_REGISTRY = "docker.io"


@dataclass(frozen=True)
class ImageRef:
    """A fully qualified reference: registry/repository:tag[@digest]."""

    registry: str
    repository: str  # always with its namespace: library/postgres, never postgres
    tag: str
    digest: str | None = None

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        """Parse like Docker does, but demand a tag: unpinned references are refused."""
        rest, _, digest = ref.partition("@")
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, remainder
        else:
            registry, path = DEFAULT_REGISTRY, rest
        name, colon, tag = path.rpartition(":")
        if not colon or "/" in tag or not tag:
            raise ConfigError(f"image {ref!r} is not pinned to a tag")
        if registry == DEFAULT_REGISTRY and "/" not in name:
            name = f"library/{name}"
        return cls(registry, name, tag, digest or None)

    def __str__(self) -> str:
        pinned = f"{self.registry}/{self.repository}:{self.tag}"
        return f"{pinned}@{self.digest}" if self.digest else pinned

    def via_mirror(self, settings: OpsSettings) -> str:
        """The reference to pull through the configured mirror (the same ref when none is set).

        The per-registry map wins over the single prefix; `library/` stays in both forms, as
        the Docker Hub mirrors require it for official images.
        """
        tail = str(self)[len(self.registry) + 1 :]
        if self.registry in settings.registry_map:
            return f"{settings.registry_map[self.registry]}/{tail}"
        if settings.registry_mirror:
            return f"{settings.registry_mirror.rstrip('/')}/{self}"
        return str(self)


def load_images(path: Path = IMAGES_FILE) -> dict[str, ImageRef]:
    """Every `*_IMAGE=ref` line of the images file, in file order."""
    images: dict[str, ImageRef] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path.name}:{number}: expected KEY=VALUE, got {line!r}")
        if key.endswith("_IMAGE"):
            try:
                images[key] = ImageRef.parse(value.strip())
            except ConfigError as exc:
                raise ConfigError(f"{path.name}:{number}: {exc}") from exc
    return images
