"""Image tarballs for air-gapped hosts: `images.save` on a connected host, `images.load` there.
Both report bytes as they go: a tarball of every image is gigabytes, minutes of silence else."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ops.console import Reporter, echo, human_size
from ops.errors import CommandError, ImageError
from ops.images.resolve import Resolved
from ops.proc import run

BLOCK = 1024 * 1024


def _image_bytes(refs: list[str]) -> int:
    done = run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", *refs], capture=True, quiet=True
    )
    return sum(int(line) for line in done.stdout.split())


def save(
    resolved: list[Resolved], output: Path, reporter: Reporter | None = None
) -> tuple[list[str], int]:
    """Write every available image into one tarball; (refs saved, bytes)."""
    reporter = reporter or Reporter()
    refs = sorted({r.ref for r in resolved if r.available})
    if not refs:
        raise ImageError(
            "no image is available to save",
            hint="`invoke images.pull` or `invoke images.bake` first",
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    # Shared layers are written once, so the tarball ends up at most this big.
    estimate = _image_bytes(refs)
    reporter.event("save", f"saving {len(refs)} images to {output}", images=refs)
    # To stdout, counted as it streams: `--output` writes a temporary file of its own and
    # renames it only at the end (nothing to measure, and left behind by an interrupt).
    argv = ["docker", "save", *refs]
    echo([*argv, ">", str(partial)])
    try:
        with tempfile.TemporaryFile() as err, partial.open("wb") as out:
            try:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
            except FileNotFoundError as exc:
                raise CommandError(argv, 127, "docker: command not found") from exc
            assert proc.stdout is not None
            written = 0
            while block := proc.stdout.read(BLOCK):
                out.write(block)
                written += len(block)
                reporter.progress(
                    "save",
                    f"docker save: {human_size(written)}",
                    completed=min(written, estimate),
                    total=estimate,
                    unit="bytes",
                )
            if code := proc.wait():
                err.seek(0)
                raise CommandError(argv, code, err.read().decode(errors="replace"))
    except BaseException:
        partial.unlink(missing_ok=True)  # never leave a truncated archive that looks complete
        raise
    partial.replace(output)
    size = output.stat().st_size
    reporter.progress(
        "save",
        f"saved {len(refs)} images, {human_size(size)}",
        done=True,
        completed=size,
        total=size,
        unit="bytes",
    )
    return refs, size


def load(archive: Path, reporter: Reporter | None = None) -> list[str]:
    """Load a tarball written by `save`, streamed into `docker load` with the bytes counted;
    returns the references it brought."""
    reporter = reporter or Reporter()
    if not archive.is_file():
        raise ImageError(
            f"{archive}: no such image archive", hint="write one with `invoke images.save`"
        )
    total = archive.stat().st_size
    argv = ["docker", "load"]
    echo([*argv, "<", str(archive)])
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err)
        except FileNotFoundError as exc:
            raise CommandError(argv, 127, "docker: command not found") from exc
        assert proc.stdin is not None
        sent = 0
        try:
            with archive.open("rb") as source:
                while block := source.read(BLOCK):
                    proc.stdin.write(block)
                    sent += len(block)
                    reporter.progress(
                        "load",
                        f"docker load: {human_size(sent)} of {human_size(total)}",
                        completed=sent,
                        total=total,
                        unit="bytes",
                    )
            proc.stdin.close()
        except BrokenPipeError:
            pass  # docker load gave up: its exit status and stderr say why
        if code := proc.wait():
            err.seek(0)
            raise CommandError(argv, code, err.read().decode(errors="replace"))
        out.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
    loaded = [line.split(": ", 1)[1] for line in lines if line.startswith("Loaded image: ")]
    reporter.progress(
        "load",
        f"loaded {len(loaded)} images from {archive.name}",
        done=True,
        completed=total,
        total=total,
        unit="bytes",
    )
    return loaded
