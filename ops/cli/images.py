"""images.*: every image the stacks need — present, pulled (through a mirror), loaded from a
tarball or baked from Debian — and the env file that tells compose which one to run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ops.cli.common import JsonOption
from ops.cli.spec import Command, opt
from ops.console import Reporter, megabytes, table
from ops.errors import ImageError
from ops.images import archive
from ops.images import bake as baking
from ops.images.bake import image_size
from ops.images.resolve import Resolved, resolve, write_env
from ops.paths import ROOT, STATE_DIR

DEFAULT_ARCHIVE = STATE_DIR / "coach-images.tar"
IMAGE_HELP = "a *_IMAGE variable of infra/compose/.env (repeatable; default: every image)"


def _rows(resolved: list[Resolved]) -> list[dict[str, str]]:
    return [
        {
            "variable": r.var,
            "image": r.ref,
            "source": r.source,
            "size": megabytes(image_size(r.ref)) if r.available else "-",
            "detail": r.detail,
        }
        for r in resolved
    ]


def _report(
    reporter: Reporter, resolved: list[Resolved], footer: str = "", **fields: object
) -> None:
    rows = _rows(resolved)
    text = table(list(rows[0]) if rows else ["variable"], [list(r.values()) for r in rows])
    reporter.result(text + (f"\n\n{footer}" if footer else ""), images=rows, **fields)


@dataclass(frozen=True)
class ImagesOptions(JsonOption):
    image: list[str] = opt([], IMAGE_HELP, short="i", metavar="VAR")


@dataclass(frozen=True)
class ResolveOptions(ImagesOptions):
    no_bake: bool = opt(False, "do not fall back to baking Debian stand-ins")


def run_resolve(options: ResolveOptions, reporter: Reporter) -> None:
    resolved = resolve(options.image or None, allow_bake=not options.no_bake, reporter=reporter)
    path = write_env(resolved)
    shown = path.relative_to(ROOT)
    _report(reporter, resolved, f"compose env file: {shown}", env_file=str(shown))


def run_pull(options: ImagesOptions, reporter: Reporter) -> None:
    resolved = resolve(options.image or None, allow_bake=False, reporter=reporter)
    _report(reporter, resolved)
    missing = [r.var for r in resolved if not r.available]
    if missing:
        raise ImageError(f"could not pull {', '.join(missing)} (see the table)")


@dataclass(frozen=True)
class BakeOptions(ImagesOptions):
    force: bool = opt(
        False, "rebuild even when the recipe is unchanged (to pick up Debian updates)"
    )


def run_bake(options: BakeOptions, reporter: Reporter) -> None:
    names = [baking.recipe_for(v).name for v in options.image] or None
    results = baking.bake(names, force=options.force, reporter=reporter)
    rows = [
        {
            "image": r.recipe.ref,
            "stands in for": r.recipe.replaces or "(base)",
            "source": f"baked ({r.action})",
            "size": megabytes(r.size_bytes),
            "seconds": f"{r.seconds:.1f}",
        }
        for r in results
    ]
    reporter.result(table(list(rows[0]), [list(r.values()) for r in rows]), images=rows)


@dataclass(frozen=True)
class SaveOptions(ImagesOptions):
    output: Path = opt(
        DEFAULT_ARCHIVE, "tarball to write", short="o", metavar="FILE",
        shown=str(DEFAULT_ARCHIVE.relative_to(ROOT)),
    )  # fmt: skip


def run_save(options: SaveOptions, reporter: Reporter) -> None:
    resolved = resolve(options.image or None, reporter=reporter)
    refs, size = archive.save(resolved, options.output, reporter)
    skipped = [r.var for r in resolved if not r.available]
    footer = f"saved {len(refs)} images, {megabytes(size)}, to {options.output}"
    if skipped:
        footer += f"\nnot included (unavailable here): {', '.join(skipped)}"
    _report(reporter, resolved, footer, archive=str(options.output), bytes=size, skipped=skipped)


@dataclass(frozen=True)
class LoadOptions(JsonOption):
    input: Path = opt(
        DEFAULT_ARCHIVE, "tarball written by images.save", metavar="FILE",
        shown=str(DEFAULT_ARCHIVE.relative_to(ROOT)),
    )  # fmt: skip


def run_load(options: LoadOptions, reporter: Reporter) -> None:
    refs = archive.load(options.input, reporter)
    reporter.result("\n".join(f"loaded {ref}" for ref in refs), loaded=refs)


RESOLVE = Command(
    "images.resolve",
    ResolveOptions,
    run_resolve,
    "Resolve every image (local, pulled through a mirror, baked) and write .state/images.env.",
)
PULL = Command(
    "images.pull",
    ImagesOptions,
    run_pull,
    "Pull the pinned images (through COACH_REGISTRY_MIRROR / COACH_REGISTRY_MAP if set).",
)
BAKE = Command(
    "images.bake",
    BakeOptions,
    run_bake,
    "Build Debian-based stand-ins for the official images (cached by recipe hash).",
)
SAVE = Command(
    "images.save",
    SaveOptions,
    run_save,
    "Save every available image (pinned or baked) into one tarball for an air-gapped host.",
)
LOAD = Command(
    "images.load",
    LoadOptions,
    run_load,
    "Load a tarball written by images.save; resolve then finds its images locally.",
)

COMMANDS = (RESOLVE, PULL, BAKE, SAVE, LOAD)
