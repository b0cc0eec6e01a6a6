"""Air-gapped installs: `images.save` on one host, `images.load` on another, and the resolver
then finds the image locally instead of pulling or baking it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ops.images import archive
from ops.images.resolve import present, resolve
from ops.proc import run


def test_save_then_load_restores_an_image_the_resolver_finds(tmp_path: Path) -> None:
    [python] = resolve(["PYTHON_IMAGE"])
    assert python.available
    alias = "coach-test/archive-roundtrip:1"  # a name of our own: removing it harms nothing
    run(["docker", "tag", python.ref, alias], quiet=True)
    try:
        tarball = tmp_path / "images.tar"
        refs, size = archive.save([dataclasses.replace(python, ref=alias)], tarball)
        assert refs == [alias] and size == tarball.stat().st_size > 10_000_000
        assert not tarball.with_name("images.tar.partial").exists()
        run(["docker", "image", "rm", alias], quiet=True)
        assert not present(alias)
        assert archive.load(tarball) == [alias]
        assert present(alias)
    finally:
        run(["docker", "image", "rm", alias], check=False, capture=True, quiet=True)
