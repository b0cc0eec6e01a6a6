"""images.*: every image the stacks need — present, pulled (through a mirror), loaded from a
tarball or baked from Debian — and the env file that tells compose which one to run."""

from __future__ import annotations

from pathlib import Path

from invoke import Context, task

from ops.console import megabytes, table
from ops.images import archive
from ops.images import bake as baking
from ops.images.bake import image_size
from ops.images.resolve import Resolved, resolve, write_env
from ops.paths import STATE_DIR
from ops.tasks._util import exits_cleanly

DEFAULT_ARCHIVE = STATE_DIR / "coach-images.tar"


def print_resolved(resolved: list[Resolved]) -> None:
    rows = [
        (r.var, r.ref, r.source, megabytes(image_size(r.ref)) if r.available else "-", r.detail)
        for r in resolved
    ]
    print(table(["variable", "image", "source", "size", "detail"], rows))


@task(
    iterable=["only"],
    help={
        "only": "Bake just this recipe (repeatable); its bases come along. Default: all.",
        "force": "Rebuild even when the recipe is unchanged (e.g. to pick up Debian updates).",
    },
)
@exits_cleanly
def bake(c: Context, only: list[str] | None = None, force: bool = False) -> None:
    """Build Debian-based stand-ins for the official images (cached by recipe hash)."""
    results = baking.bake(only or None, force=force)
    rows = [
        (
            r.recipe.ref,
            r.recipe.replaces or "(base)",
            f"baked ({r.action})",
            megabytes(r.size_bytes),
            f"{r.seconds:.1f}",
        )
        for r in results
    ]
    print(table(["image", "stands in for", "source", "size", "seconds"], rows))


@task(
    name="resolve",
    iterable=["image"],
    help={
        "image": "A *_IMAGE variable from infra/compose/.env (repeatable). Default: all.",
        "no_bake": "Do not fall back to baking Debian stand-ins.",
    },
)
@exits_cleanly
def resolve_(c: Context, image: list[str] | None = None, no_bake: bool = False) -> None:
    """Resolve every image (local → pull via mirror → baked) and write .state/images.env."""
    resolved = resolve(image or None, allow_bake=not no_bake)
    path = write_env(resolved)
    print_resolved(resolved)
    print(f"\ncompose env file: {path.relative_to(STATE_DIR.parent)}")


@task(iterable=["image"], help={"image": "A *_IMAGE variable (repeatable). Default: all."})
@exits_cleanly
def pull(c: Context, image: list[str] | None = None) -> None:
    """Pull the pinned images (through COACH_REGISTRY_MIRROR / COACH_REGISTRY_MAP if set)."""
    resolved = resolve(image or None, allow_bake=False)
    print_resolved(resolved)
    missing = [r.var for r in resolved if not r.available]
    if missing:
        raise SystemExit(f"error: could not pull {', '.join(missing)} (see table)")


@task(
    iterable=["image"],
    help={
        "output": f"Tarball to write (default {DEFAULT_ARCHIVE.relative_to(STATE_DIR.parent)}).",
        "image": "Only this *_IMAGE variable (repeatable). Default: every image.",
    },
)
@exits_cleanly
def save(c: Context, output: str = str(DEFAULT_ARCHIVE), image: list[str] | None = None) -> None:
    """Save every available image (pinned or baked) into one tarball for an air-gapped host."""
    resolved = resolve(image or None)
    refs, size = archive.save(resolved, Path(output))
    print_resolved(resolved)
    print(f"\nsaved {len(refs)} images, {megabytes(size)}, to {output}")
    skipped = [r.var for r in resolved if not r.available]
    if skipped:
        print(f"not included (unavailable here): {', '.join(skipped)}")


@task(help={"input": "Tarball written by images.save."})
@exits_cleanly
def load(c: Context, input: str = str(DEFAULT_ARCHIVE)) -> None:
    """Load a tarball written by images.save; resolve then finds its images locally."""
    for ref in archive.load(Path(input)):
        print(f"loaded {ref}")
