"""README command 1 on a host where Docker cannot be provisioned (simulated: neither docker
nor apt-get on PATH) starts the embedded app, says why, and /health answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.processes import ROOT, free_port, wait_until


def test_up_falls_back_to_embedded_app(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    port = free_port()
    env = {
        "PATH": str(tmp_path),
        "HOME": str(tmp_path),
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    invoke = Path(sys.executable).parent / "invoke"
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(invoke), "up", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, seconds=60, what="embedded app answering /health")
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
    finally:
        proc.terminate()
        proc.wait(20)
    said = log.read_text()
    assert "Docker cannot be provisioned on this host" in said
    assert "apt-get is not available" in said, "the reason is stated"
    assert "Falling back to the embedded app" in said
    assert health["status"] == "healthy"
    assert health["checks"]["redis"]["status"] == "embedded"
