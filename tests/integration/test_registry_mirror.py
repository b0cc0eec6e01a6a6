"""Pulling through a registry mirror, both ways users in mainland China configure one: a
prefix before the full reference, and a per-registry host map. The mirror is a local registry
(test double for m.daocloud.io and friends); the resolver must pull through it, re-tag the
image with its pinned name, and report the bytes it downloads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ops.console import Reporter
from ops.images.build import build_image
from ops.images.catalog import ImageRef
from ops.images.resolve import present, resolve
from ops.proc import run
from ops.settings import OpsSettings
from tests.support.containers import LABELS
from tests.support.processes import ROOT, free_port, wait_until

PINNED = "docker.io/library/coach-mirror-test:1"
BLOB_BYTES = 3_000_000


@pytest.fixture(scope="module")
def mirror() -> Iterator[str]:
    build_image(
        "coach-test/registry:local",
        context=ROOT / "tests/registry",
        dockerfile=ROOT / "tests/registry/Dockerfile",
        args={},
    )
    port = free_port()
    labels = [arg for k, v in LABELS.items() for arg in ("--label", f"{k}={v}")]
    container = run(
        [
            "docker",
            "run",
            "--detach",
            *labels,
            "-p",
            f"127.0.0.1:{port}:5000",
            "coach-test/registry:local",
        ],
        capture=True,
        quiet=True,
    ).stdout.strip()
    host = f"127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"http://{host}/v2/"), seconds=30, what="registry up")
        yield host
    finally:
        run(["docker", "rm", "-f", container], check=False, capture=True, quiet=True)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _publish(remote: str) -> None:
    """Put a small image on the mirror under `remote`, then forget it locally. Its top layer
    (random bytes, incompressible) exists nowhere else, so pulling it downloads bytes rather
    than finding every layer already there."""
    labels = [arg for k, v in LABELS.items() for arg in ("--label", f"{k}={v}")]
    script = f"head -c {BLOB_BYTES} /dev/urandom > /blob"
    container = run(
        ["docker", "run", "--detach", *labels, "coach-bake/debian:trixie", "sh", "-c", script],
        capture=True,
        quiet=True,
    ).stdout.strip()
    try:
        run(["docker", "wait", container], capture=True, quiet=True)
        run(["docker", "commit", container, remote], capture=True, quiet=True)
    finally:
        run(["docker", "rm", "-f", container], check=False, capture=True, quiet=True)
    run(["docker", "push", "--quiet", remote], capture=True, quiet=True)
    run(["docker", "image", "rm", remote], capture=True, quiet=True)


@pytest.mark.parametrize("mode", ["prefix", "registry-map"])
def test_resolver_pulls_through_the_mirror_and_retags(
    mirror: str, mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = ImageRef.parse(PINNED)
    settings = (
        OpsSettings(registry_mirror=mirror)
        if mode == "prefix"
        else OpsSettings(registry_map={"docker.io": mirror})
    )
    remote = image.via_mirror(settings)
    assert remote == (
        f"{mirror}/{PINNED}" if mode == "prefix" else f"{mirror}/library/coach-mirror-test:1"
    )
    _publish(remote)
    images_file = tmp_path / ".env"
    images_file.write_text(f"TEST_IMAGE={PINNED}\n")
    run(["docker", "image", "rm", PINNED], check=False, capture=True, quiet=True)
    try:
        [result] = resolve(
            ["TEST_IMAGE"],
            settings=settings,
            images_file=images_file,
            allow_bake=False,
            reporter=Reporter(json_lines=True),
        )
        assert result.source == "pulled" and result.detail == f"via {mirror}"
        assert result.ref == PINNED and present(PINNED)
        # The new layer's bytes as the engine streamed them (gzip makes random bytes no smaller).
        # Lines in between are throttled away on a fast pull; the last one is always there.
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        progress = [e for e in lines if e["event"] == "progress" and e["step"] == PINNED]
        assert progress and {e["unit"] for e in progress} == {"bytes"}
        last = progress[-1]
        assert last["done"] and last["completed"] == last["total"] >= BLOB_BYTES
    finally:
        run(["docker", "image", "rm", PINNED, remote], check=False, capture=True, quiet=True)
