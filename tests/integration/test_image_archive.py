"""Air-gapped installs: `images.save` on one host, `images.load` on another, and the resolver
then finds the image locally instead of pulling or baking it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from ops.console import Reporter
from ops.images import archive
from ops.images.resolve import present, resolve
from ops.proc import run


def _bytes_progress(out: str, step: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in out.splitlines()]
    return [e for e in events if e["event"] == "progress" and e["step"] == step]


def test_save_then_load_restores_an_image_the_resolver_finds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [python] = resolve(["PYTHON_IMAGE"])
    assert python.available
    alias = "coach-test/archive-roundtrip:1"  # a name of our own: removing it harms nothing
    run(["docker", "tag", python.ref, alias], quiet=True)
    try:
        tarball = tmp_path / "images.tar"
        voice = Reporter(json_lines=True, progress_every_s=0)
        refs, size = archive.save([dataclasses.replace(python, ref=alias)], tarball, voice)
        assert refs == [alias] and size == tarball.stat().st_size > 10_000_000
        assert not tarball.with_name("images.tar.partial").exists()
        run(["docker", "image", "rm", alias], quiet=True)
        assert not present(alias)
        assert archive.load(tarball, voice) == [alias]
        assert present(alias)
        out = capsys.readouterr().out
        for step in ("save", "load"):  # bytes counted as they go, ending at the tarball's size
            last = _bytes_progress(out, step)[-1]
            assert last["done"] and last["unit"] == "bytes" and last["completed"] == size
    finally:
        run(["docker", "image", "rm", alias], check=False, capture=True, quiet=True)
