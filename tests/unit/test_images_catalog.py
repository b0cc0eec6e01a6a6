"""Image references: parsing, pinning, and mirror rewriting for hosts behind the GFW."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.errors import ConfigError, ImageError
from ops.images import bake
from ops.images.catalog import ImageRef, load_images
from ops.settings import OpsSettings, get_settings


@pytest.mark.parametrize(
    ("ref", "registry", "repository", "tag"),
    [
        ("docker.io/library/postgres:17.7-trixie", "docker.io", "library/postgres", "17.7-trixie"),
        ("postgres:17", "docker.io", "library/postgres", "17"),
        ("qdrant/qdrant:v1.16.3", "docker.io", "qdrant/qdrant", "v1.16.3"),
        (
            "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
            "quay.io",
            "minio/minio",
            "RELEASE.2025-09-07T16-13-09Z",
        ),
        ("localhost:5000/coach/app:1", "localhost:5000", "coach/app", "1"),
    ],
)
def test_parse_fills_registry_and_library(
    ref: str, registry: str, repository: str, tag: str
) -> None:
    image = ImageRef.parse(ref)
    assert (image.registry, image.repository, image.tag) == (registry, repository, tag)


@pytest.mark.parametrize(
    "ref", ["postgres", "docker.io/library/postgres", "localhost:5000/app", "redis:"]
)
def test_unpinned_references_are_refused(ref: str) -> None:
    with pytest.raises(ConfigError, match="not pinned"):
        ImageRef.parse(ref)


def test_digest_survives_round_trip_and_mirror() -> None:
    image = ImageRef.parse("docker.io/library/redis:8.0.4@sha256:" + "a" * 64)
    assert str(image).endswith("@sha256:" + "a" * 64)
    mirrored = image.via_mirror(OpsSettings(registry_mirror="m.daocloud.io"))
    assert mirrored == f"m.daocloud.io/{image}"


def test_prefix_mirror_keeps_full_reference_with_library() -> None:
    settings = OpsSettings(registry_mirror="m.daocloud.io/")
    image = ImageRef.parse("postgres:17.7-trixie")
    assert image.via_mirror(settings) == "m.daocloud.io/docker.io/library/postgres:17.7-trixie"


def test_registry_map_rewrites_per_registry_and_wins_over_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COACH_REGISTRY_MAP", "docker.io=docker.m.daocloud.io, quay.io=quay.m.io")
    monkeypatch.setenv("COACH_REGISTRY_MIRROR", "m.daocloud.io")
    settings = OpsSettings()
    assert (
        ImageRef.parse("redis:8.0.4").via_mirror(settings)
        == "docker.m.daocloud.io/library/redis:8.0.4"
    )
    assert (
        ImageRef.parse("quay.io/prometheus/prometheus:v2.53.5").via_mirror(settings)
        == "quay.m.io/prometheus/prometheus:v2.53.5"
    )
    # A registry outside the map still goes through the prefix.
    assert ImageRef.parse("ghcr.io/a/b:1").via_mirror(settings) == "m.daocloud.io/ghcr.io/a/b:1"


def test_no_mirror_pulls_the_pinned_reference() -> None:
    image = ImageRef.parse("quay.io/prometheus/alertmanager:v0.28.1")
    assert image.via_mirror(OpsSettings()) == str(image)


def test_malformed_registry_map_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COACH_REGISTRY_MAP", "docker.io")
    with pytest.raises(ValueError, match="REGISTRY=HOST"):
        OpsSettings()


def test_images_file_pins_every_image_fully() -> None:
    images = load_images()
    assert {
        "POSTGRES_IMAGE",
        "REDIS_IMAGE",
        "QDRANT_IMAGE",
        "MINIO_IMAGE",
        "NGINX_IMAGE",
        "PROMETHEUS_IMAGE",
        "GRAFANA_IMAGE",
        "JAEGER_IMAGE",
    } <= set(images)
    for var, image in images.items():
        assert image.registry in {"docker.io", "quay.io", "ghcr.io"}, var
        assert image.tag not in {"latest", "stable", "main"}, f"{var} floats on {image.tag}"


def test_images_file_rejects_an_unpinned_line(tmp_path: Path) -> None:
    bad = tmp_path / ".env"
    bad.write_text("# comment\nCOMPOSE_PROJECT_NAME=x\nREDIS_IMAGE=redis\n")
    with pytest.raises(ConfigError, match=r"\.env:3: image 'redis' is not pinned"):
        load_images(bad)


def test_every_bake_recipe_stands_in_for_a_pinned_image() -> None:
    images = load_images()
    for recipe in bake.RECIPES.values():
        if recipe.replaces:
            assert recipe.replaces in images, recipe.name
            assert (recipe.context / "Dockerfile").is_file(), recipe.name
        if recipe.base:
            assert recipe.base in bake.RECIPES


def test_bases_come_first_in_the_build_order() -> None:
    names = [r.name for r in bake.closure(["postgres", "python", "redis"])]
    assert names == ["debian-trixie", "postgres", "debian-bookworm", "python", "redis"]
    with pytest.raises(ImageError, match="no bake recipe 'mysql'"):
        bake.closure(["mysql"])


def test_recipe_hash_follows_the_recipe_and_its_base(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "python").mkdir()
    dockerfile = tmp_path / "python" / "Dockerfile"
    dockerfile.write_text("FROM x\n")
    monkeypatch.setattr(bake, "BAKE_DIR", tmp_path)
    python = bake.RECIPES["python"]
    first = bake.recipe_hash(python)
    assert bake.recipe_hash(python) == first
    dockerfile.write_text("FROM x\nRUN true\n")
    assert bake.recipe_hash(python) != first
    changed_recipe = bake.recipe_hash(python)
    monkeypatch.setenv("COACH_DEBIAN_MIRROR", "http://mirror.example/debian")
    get_settings.cache_clear()
    try:
        assert bake.recipe_hash(python) != changed_recipe, "a new base must rebuild its children"
    finally:
        get_settings.cache_clear()
