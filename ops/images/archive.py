"""Image tarballs for air-gapped hosts: `images.save` on a connected host, `images.load` there."""

from __future__ import annotations

from pathlib import Path

from ops.console import say
from ops.errors import ImageError
from ops.images.resolve import Resolved
from ops.proc import run


def save(resolved: list[Resolved], output: Path) -> tuple[list[str], int]:
    """Write every available image into one tarball; (refs saved, bytes)."""
    refs = sorted({r.ref for r in resolved if r.available})
    if not refs:
        raise ImageError(
            "no image is available to save",
            hint="`invoke images.pull` or `invoke images.bake` first",
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    say(f"saving {len(refs)} images to {output}")
    try:
        run(["docker", "save", "--output", str(partial), *refs])
    except BaseException:
        partial.unlink(missing_ok=True)  # never leave a truncated archive that looks complete
        raise
    partial.replace(output)
    return refs, output.stat().st_size


def load(archive: Path) -> list[str]:
    """Load a tarball written by `save`; returns the references it brought."""
    if not archive.is_file():
        raise ImageError(
            f"{archive}: no such image archive", hint="write one with `invoke images.save`"
        )
    done = run(["docker", "load", "--input", str(archive)], capture=True)
    return [
        line.split(": ", 1)[1]
        for line in done.stdout.splitlines()
        if line.startswith("Loaded image: ")
    ]
