"""README command 1 on a host where Docker cannot be provisioned (simulated: neither docker
nor apt-get on PATH) starts the embedded app, says why, and /health answers; stopping it
leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.apikeys import headers, read_key
from tests.support.processes import ROOT, free_port, wait_until


@contextlib.contextmanager
def invoke_up(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`invoke up ARGS` with a minimal env (no docker, no apt-get on PATH), in a session of its
    own; afterwards its whole group is killed, so a failing test cannot leak a server either."""
    tmp_path.chmod(0o777)
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
            [str(invoke), "up", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def wait_healthy(proc: subprocess.Popen[bytes], log: Path, port: int) -> None:
    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, seconds=60, what="embedded app answering /health")


def servers_on(port: int) -> list[str]:
    """`pid: command line` of live processes serving backend.app:app on this port."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # exited while we looked
            continue
        if "backend.app:app" in argv and str(port) in argv:
            found.append(f"{cmdline.parent.name}: {' '.join(argv).strip()}")
    return found


def listening_on(port: int) -> bool:
    """Whether any socket listens on this TCP port. Read from /proc/net rather than probed with
    bind(), which other processes' outgoing connections on the same ephemeral port can fail."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]  # after the header
        except OSError:  # no IPv6 here
            continue
        for row in rows:
            _, local, _, state, *_ = row.split()
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                return True
    return False


def test_up_falls_back_to_embedded_app(tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1/snippets"
    with invoke_up(tmp_path, "--port", str(port)) as (proc, log):
        wait_healthy(proc, log, port)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        # The dev key: where `up` says it is, registered at startup, never printed itself.
        where = re.search(
            r"API key \(development: tenant dev, scope write\) in (\S+);", log.read_text()
        )
        assert where, log.read_text()
        key = read_key(ROOT / where[1])
        keyed = httpx.get(api, headers=headers(key), timeout=5)
        anonymous = httpx.get(api, timeout=5)
    said = log.read_text()
    assert "Docker cannot be provisioned on this host" in said
    assert "apt-get is not available" in said, "the reason is stated"
    assert "Falling back to the embedded app" in said
    assert health["status"] == "healthy"
    assert health["checks"]["redis"]["status"] == "embedded"
    assert where[1] == "infra/compose/secrets/dev/api_key" and key not in said
    assert (keyed.status_code, anonymous.status_code) == (200, 401), keyed.text


def test_sigterm_to_invoke_up_embedded_leaves_no_server(tmp_path: Path) -> None:
    port = free_port()
    with invoke_up(tmp_path, "--embedded", "--port", str(port)) as (proc, log):
        wait_healthy(proc, log, port)
        proc.send_signal(signal.SIGTERM)  # the invoke process only, as a supervisor would
        proc.wait(20)
        # Checked inside the block: its exit kills the group, which would hide an orphan. A few
        # seconds' grace for anything exiting with it; an orphan would stay for good.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not servers_on(port), seconds=5, what="servers gone")
        leftovers = servers_on(port)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not listening_on(port), seconds=5, what="port released")
        listening = listening_on(port)
    assert leftovers == [], f"still serving after SIGTERM: {leftovers}\n{log.read_text()}"
    assert not listening, f"port {port} still has a listener after SIGTERM"
