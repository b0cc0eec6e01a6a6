"""`images.bake`: Debian-built stand-ins for the official images, for hosts without a registry.

Two Debian bases come from mmdebstrap + `docker import`; every other image is a Dockerfile in
infra/standins/<name>/ built FROM a base with `docker compose build` (the engine's BuildKit, so
secret and cache mounts work without buildx). Each image carries the hash of its recipe in a
label: an unchanged recipe is reused, a changed one (or a changed base) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ops.console import Reporter, say
from ops.errors import ImageError
from ops.host import engine as docker_engine
from ops.host.packages import apt_install
from ops.images.debian import host_mirrors
from ops.paths import BAKE_DIR, STATE_DIR
from ops.proc import run
from ops.settings import get_settings

RECIPE_LABEL = "org.coach.bake.recipe"
BAKE_PROJECT = "coach-bake"
# mmdebstrap options shared by both bases: merged /usr without usrmerge's perl, no docs,
# manuals or locales (the dpkg excludes stay in the image, so derived layers drop them too).
DEBIAN_EXCLUDES = [
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
    "/usr/share/linda/*",
]


@dataclass(frozen=True)
class Recipe:
    name: str
    ref: str
    base: str | None = None  # name of the recipe this one builds FROM
    suite: str | None = None  # set for the mmdebstrap bases
    replaces: str | None = None  # the *_IMAGE variable this stands in for

    @property
    def context(self) -> Path:
        return BAKE_DIR / self.name


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("debian-bookworm", "coach-bake/debian:bookworm", suite="bookworm"),
        Recipe("debian-trixie", "coach-bake/debian:trixie", suite="trixie"),
        Recipe(
            "python", "coach-bake/python:3.11-bookworm", "debian-bookworm", replaces="PYTHON_IMAGE"
        ),
        Recipe(
            "postgres", "coach-bake/postgres:17-trixie", "debian-trixie", replaces="POSTGRES_IMAGE"
        ),
        Recipe("redis", "coach-bake/redis:8.0-trixie", "debian-trixie", replaces="REDIS_IMAGE"),
        Recipe(
            "nginx",
            "coach-bake/nginx-unprivileged:1.26-trixie",
            "debian-trixie",
            replaces="NGINX_IMAGE",
        ),
        Recipe(
            "prometheus",
            "coach-bake/prometheus:2.53-trixie",
            "debian-trixie",
            replaces="PROMETHEUS_IMAGE",
        ),
        Recipe(
            "alertmanager",
            "coach-bake/alertmanager:0.28-trixie",
            "debian-trixie",
            replaces="ALERTMANAGER_IMAGE",
        ),
        Recipe(
            "postgres-exporter",
            "coach-bake/postgres-exporter:0.17-trixie",
            "debian-trixie",
            replaces="POSTGRES_EXPORTER_IMAGE",
        ),
        Recipe(
            "redis-exporter",
            "coach-bake/redis-exporter:1.69-trixie",
            "debian-trixie",
            replaces="REDIS_EXPORTER_IMAGE",
        ),
        Recipe(
            "nginx-exporter",
            "coach-bake/nginx-exporter:1.4-trixie",
            "debian-trixie",
            replaces="NGINX_EXPORTER_IMAGE",
        ),
        Recipe(
            "node-exporter",
            "coach-bake/node-exporter:1.9-trixie",
            "debian-trixie",
            replaces="NODE_EXPORTER_IMAGE",
        ),
        Recipe(
            "blackbox-exporter",
            "coach-bake/blackbox-exporter:0.26-trixie",
            "debian-trixie",
            replaces="BLACKBOX_EXPORTER_IMAGE",
        ),
    ]
}
BY_IMAGE_VAR = {r.replaces: r for r in RECIPES.values() if r.replaces}


@dataclass(frozen=True)
class BakeResult:
    recipe: Recipe
    action: str  # "cached" or "built"
    size_bytes: int
    seconds: float


def _mmdebstrap_argv(recipe: Recipe, output: Path) -> list[str]:
    assert recipe.suite is not None
    mirrors = host_mirrors(get_settings().debian_mirror)
    return [
        "mmdebstrap",
        "--variant=minbase",
        "--format=tar",
        "--quiet",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        "--include=ca-certificates",
        '--aptopt=APT::Install-Recommends "false"',
        # As docker-library's debian images do: apt-get update in a derived layer leaves no
        # binary package caches behind (they weigh ~90 MB).
        '--aptopt=Dir::Cache::pkgcache ""',
        '--aptopt=Dir::Cache::srcpkgcache ""',
        *[f"--dpkgopt=path-exclude={pattern}" for pattern in DEBIAN_EXCLUDES],
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        # apt's package lists are fetched again by each Dockerfile; do not ship them.
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin',
        recipe.suite,
        str(output),
        *mirrors.sources(recipe.suite),
    ]


def recipe_hash(recipe: Recipe) -> str:
    digest = hashlib.sha256()
    if recipe.suite is not None:
        digest.update(json.dumps(_mmdebstrap_argv(recipe, Path("-"))).encode())
    else:
        for path in sorted(p for p in recipe.context.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(recipe.context)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    if recipe.base is not None:
        digest.update(recipe_hash(RECIPES[recipe.base]).encode())
    return digest.hexdigest()[:16]


def image_label(ref: str, label: str) -> str | None:
    done = run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', ref],
        check=False,
        capture=True,
        quiet=True,
    )
    value = done.stdout.strip()
    return value if done.returncode == 0 and value not in ("", "<no value>") else None


def image_size(ref: str) -> int:
    done = run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", ref], capture=True, quiet=True
    )
    return int(done.stdout.strip())


def recipe_for(name: str) -> Recipe:
    """A recipe by the *_IMAGE variable it stands in for, or by its own name (the bases)."""
    recipe = BY_IMAGE_VAR.get(name) or RECIPES.get(name)
    if recipe is None:
        raise ImageError(
            f"no Debian stand-in for {name!r}",
            hint="known: "
            + ", ".join([*BY_IMAGE_VAR, *(n for n, r in RECIPES.items() if not r.replaces)]),
        )
    return recipe


def closure(names: list[str]) -> list[Recipe]:
    """The named recipes and their bases, bases first."""
    ordered: list[Recipe] = []

    def visit(name: str) -> None:
        if name not in RECIPES:
            raise ImageError(
                f"no bake recipe {name!r}",
                hint=f"known: {', '.join([*BY_IMAGE_VAR, *RECIPES])}",
            )
        recipe = RECIPES[name]
        if recipe.base:
            visit(recipe.base)
        if recipe not in ordered:
            ordered.append(recipe)

    for name in names:
        visit(name)
    return ordered


def bake(
    names: list[str] | None = None, *, force: bool = False, reporter: Reporter | None = None
) -> list[BakeResult]:
    """Build what is missing or stale among the named recipes (default: all) and their bases."""
    docker_engine.ensure()
    recipes = closure(names or list(RECIPES))
    results: dict[str, BakeResult] = {}
    stale = [r for r in recipes if force or image_label(r.ref, RECIPE_LABEL) != recipe_hash(r)]
    for recipe in recipes:
        if recipe not in stale:
            results[recipe.name] = BakeResult(recipe, "cached", image_size(recipe.ref), 0.0)
    reporter = reporter or Reporter()

    def progress(done: int, message: str) -> None:
        reporter.progress(
            "bake",
            message,
            done=done == len(stale),
            completed=done,
            total=len(stale),
            unit="images",
        )

    for recipe in (r for r in stale if r.suite is not None):
        progress(
            len([r for r in results.values() if r.action == "built"]), f"bootstrapping {recipe.ref}"
        )
        started = time.monotonic()
        _build_base(recipe)
        results[recipe.name] = BakeResult(
            recipe, "built", image_size(recipe.ref), time.monotonic() - started
        )
    dockerfiles = [r for r in stale if r.suite is None]
    if dockerfiles:
        progress(len(stale) - len(dockerfiles), f"building {len(dockerfiles)} images in parallel")
        started = time.monotonic()
        _build_dockerfiles(dockerfiles)
        per_image = (time.monotonic() - started) / len(dockerfiles)
        for recipe in dockerfiles:
            results[recipe.name] = BakeResult(recipe, "built", image_size(recipe.ref), per_image)
    if stale:
        progress(len(stale), f"baked {len(stale)} images")
    return [results[r.name] for r in recipes]


def _build_base(recipe: Recipe) -> None:
    if run(["which", "mmdebstrap"], check=False, capture=True, quiet=True).returncode != 0:
        apt_install(["mmdebstrap"], why="baking Debian base images")
    say(f"bootstrapping {recipe.ref} from Debian {recipe.suite} with mmdebstrap")
    STATE_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=STATE_DIR, prefix="bake-") as scratch:
        tarball = Path(scratch) / f"{recipe.suite}.tar"
        run(_mmdebstrap_argv(recipe, tarball))
        run(
            [
                "docker",
                "import",
                "--change",
                f"LABEL {RECIPE_LABEL}={recipe_hash(recipe)}",
                "--change",
                f"LABEL org.opencontainers.image.title={recipe.ref}",
                "--change",
                'CMD ["bash"]',
                "--change",
                "ENV LANG=C.UTF-8",
                str(tarball),
                recipe.ref,
            ],
            quiet=False,
            capture=True,
        )


def _build_dockerfiles(recipes: list[Recipe]) -> None:
    """One `docker compose build` for all stale Dockerfile recipes, so BuildKit runs them
    in parallel; the compose file is generated because the recipe hashes are computed here."""
    services = {
        r.name: {
            "image": r.ref,
            "build": {
                "context": str(r.context),
                "args": {"BASE": RECIPES[r.base].ref} if r.base else {},
                "labels": {RECIPE_LABEL: recipe_hash(r)},
            },
        }
        for r in recipes
    }
    STATE_DIR.mkdir(exist_ok=True)
    compose_file = STATE_DIR / "bake.compose.json"
    compose_file.write_text(json.dumps({"name": BAKE_PROJECT, "services": services}, indent=2))
    say(f"building {', '.join(r.ref for r in recipes)}")
    run(["docker", "compose", "-f", str(compose_file), "build", *services])
