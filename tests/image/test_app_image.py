"""The application image: non-root, exec-form HEALTHCHECK, no compilers, no build secret in
any layer, runs with a read-only root filesystem, within its size budget — and how it
compares with a naive single-stage build of the same app, built in the same run."""

from __future__ import annotations

import secrets
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import httpx

from ops.console import megabytes
from ops.images.build import build_image
from ops.paths import ROOT
from ops.proc import run
from tests.image.conftest import BuiltImage, inspect
from tests.support import apikeys
from tests.support.processes import free_port, wait_until

SIZE_BUDGET = 450 * 10**6  # bytes; the runtime deps alone are ~230 MB (numpy, grpc via qdrant)
NAIVE = "coach/app:naive-test"


def docker_run(image: str, *args: str, entrypoint: str | None = None) -> str:
    argv = ["docker", "run", "--rm", "--label", "org.coach.test=1"]
    if entrypoint:
        argv += ["--entrypoint", entrypoint]
    return run([*argv, image, *args], capture=True, quiet=True).stdout


def test_runs_as_fixed_non_root_user(app_image: BuiltImage) -> None:
    config: Any = inspect(app_image.ref)["Config"]
    assert config["User"] == "10001:10001"
    assert (
        docker_run(
            app_image.ref, "-c", "import os; print(os.getuid(), os.getgid())", entrypoint="python"
        ).strip()
        == "10001 10001"
    )


def test_healthcheck_is_exec_form_without_curl(app_image: BuiltImage) -> None:
    config: Any = inspect(app_image.ref)["Config"]
    test = config["Healthcheck"]["Test"]
    assert test[0] == "CMD" and test[1] == "python", test
    assert (
        docker_run(
            app_image.ref, "-c", "command -v curl wget || echo none", entrypoint="sh"
        ).strip()
        == "none"
    )


def test_contains_no_compiler(app_image: BuiltImage) -> None:
    found = docker_run(
        app_image.ref,
        "-c",
        "for c in gcc cc c++ g++ clang make; do command -v $c; done; true",
        entrypoint="sh",
    )
    assert found.strip() == "", f"compilers in the runtime image: {found.split()}"


def test_no_build_secret_in_any_layer_or_history(app_image: BuiltImage) -> None:
    history = run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", app_image.ref],
        capture=True,
        quiet=True,
    ).stdout
    assert app_image.marker not in history
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "image.tar"
        run(["docker", "save", "--output", str(archive), app_image.ref], quiet=True)
        with tarfile.open(archive) as outer:
            for member in outer.getmembers():
                if not member.isfile():
                    continue
                blob = outer.extractfile(member)
                assert blob is not None
                data = blob.read()
                assert app_image.marker.encode() not in data, f"secret in {member.name}"
                if member.name.endswith((".tar", "layer.tar")) or "blobs/" in member.name:
                    _assert_layer_clean(data, app_image.marker)


def _assert_layer_clean(data: bytes, marker: str) -> None:
    """Layers may be compressed: open them as tar archives where they are ones."""
    import io  # noqa: PLC0415

    try:
        layer = tarfile.open(fileobj=io.BytesIO(data))  # noqa: SIM115 - closed below
    except tarfile.TarError:
        return
    with layer:
        for entry in layer.getmembers():
            if entry.isfile() and entry.size < 50 * 10**6:
                content = layer.extractfile(entry)
                assert content is not None
                assert marker.encode() not in content.read(), f"secret in {entry.name}"


def test_runs_with_read_only_root_filesystem(app_image: BuiltImage, tmp_path: Path) -> None:
    port = free_port()
    # The embedded app registers this key at startup, as the dev stack's migrate does.
    key = f"coach_{secrets.token_urlsafe(32)}"
    key_file = tmp_path / "api_key"
    key_file.write_text(key)
    key_file.chmod(0o644)  # read by the image's uid 10001 through the bind mount
    container = run(
        [
            "docker",
            "run",
            "--detach",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--label",
            "org.coach.test=1",
            "-p",
            f"127.0.0.1:{port}:8000",
            "-v",
            f"{key_file}:/run/secrets/api_key:ro",
            "-e",
            "API_KEY_BOOTSTRAP_FILE=/run/secrets/api_key",
            app_image.ref,
        ],
        capture=True,
        quiet=True,
    ).stdout.strip()
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, seconds=60, what="embedded app in a read-only container")
        upload = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/snippets",
            timeout=10,
            json={"title": "ro.py", "language": "python", "content": "x = 1\n"},
            headers=apikeys.headers(key),
        )
        assert upload.status_code == 202, upload.text
    finally:
        logs = run(["docker", "logs", container], check=False, capture=True, quiet=True)
        run(["docker", "rm", "-f", container], check=False, capture=True, quiet=True)
    assert "Read-only file system" not in (logs.stdout + logs.stderr)


def test_size_within_budget_and_against_a_naive_build(app_image: BuiltImage) -> None:
    build_image(
        NAIVE,
        context=ROOT,
        dockerfile=ROOT / "tests/image/Dockerfile.naive",
        args={"PYTHON_IMAGE": _resolved("PYTHON_IMAGE")},
    )
    naive = int(
        run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", NAIVE], capture=True, quiet=True
        ).stdout
    )
    run(["docker", "image", "rm", NAIVE], check=False, capture=True, quiet=True)
    print(
        f"\napp image {megabytes(app_image.size)}, naive single-stage {megabytes(naive)}, "
        f"ratio {app_image.size / naive:.2f} (budget {megabytes(SIZE_BUDGET)})"
    )
    assert app_image.size <= SIZE_BUDGET
    assert app_image.size < naive


def _resolved(var: str) -> str:
    for line in (ROOT / ".state" / "images.env").read_text().splitlines():
        if line.startswith(f"{var}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{var} not resolved")
