"""The tunnel the data tooling opens into a stack's network (ops/data/tunnel.py), against a
real server on an `internal` network that publishes no port: the same situation as Qdrant or
the object store in the production stack, with the pinned Python image standing in for both
the service (an HTTP server) and the app image the tunnel runs in."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from ops.data import tunnel
from ops.data.tunnel import TunnelSpec, open_tunnel
from ops.errors import TargetError
from ops.proc import run
from tests.support.containers import LABELS, image_or_skip

PROJECT = f"coach-tunneltest-{uuid.uuid4().hex[:6]}"
LABEL_ARGS = [arg for key, value in LABELS.items() for arg in ("--label", f"{key}={value}")]


def _tunnels() -> list[str]:
    listed = run(
        ["docker", "ps", "-aq", "--filter", f"label={tunnel.LABEL}={PROJECT}"],
        capture=True,
        quiet=True,
    )
    return listed.stdout.split()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, str, bytes]]:
    """(image, network, body): an HTTP server reachable as `web:8000` on an internal network."""
    image = image_or_skip("PYTHON_IMAGE")
    network = f"{PROJECT}_app"
    run(["docker", "network", "create", "--internal", *LABEL_ARGS, network], quiet=True)
    body = bytes(range(256)) * 4096  # 1 MiB: many reads of the forwarder
    script = (
        "import http.server\n"
        "body = bytes(range(256)) * 4096\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers(); self.wfile.write(body)\n"
        "http.server.ThreadingHTTPServer(('0.0.0.0', 8000), H).serve_forever()\n"
    )
    name = f"{PROJECT}-web"
    run(
        ["docker", "run", "-d", "--name", name, "--network", network,
         "--network-alias", "web", *LABEL_ARGS, image, "python", "-c", script],
        quiet=True,
    )  # fmt: skip
    try:
        yield image, network, body
    finally:
        run(["docker", "rm", "-f", name], check=False, capture=True, quiet=True)
        for leftover in _tunnels():
            run(["docker", "rm", "-f", leftover], check=False, capture=True, quiet=True)
        run(["docker", "network", "rm", network], check=False, capture=True, quiet=True)


def test_a_tunnel_reaches_a_service_that_publishes_no_port_and_goes_away(
    served: tuple[str, str, bytes],
) -> None:
    image, network, body = served
    spec = TunnelSpec(PROJECT, "web", "web", 8000, network, image)
    started = time.monotonic()
    with open_tunnel(spec) as opened:
        print(f"tunnel accepting after {time.monotonic() - started:.2f}s")
        for _ in range(3):
            got = httpx.get(f"http://127.0.0.1:{opened.local_port}/", timeout=30).content
            assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
        inspect = run(
            ["docker", "inspect", "--format",
             "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}}",
             opened.container],
            capture=True, quiet=True,
        ).stdout.split()  # fmt: skip
        assert inspect == [tunnel.APP_USER, "true", "[ALL]"]
    assert _tunnels() == [], "stopped and removed on leaving"
    with pytest.raises(KeyboardInterrupt), open_tunnel(spec):
        raise KeyboardInterrupt  # Ctrl-C in the middle of a backup
    assert _tunnels() == []


def test_a_tunnel_left_by_a_killed_run_is_removed_by_the_next_one(
    served: tuple[str, str, bytes],
) -> None:
    image, network, _ = served
    spec = TunnelSpec(PROJECT, "web", "web", 8000, network, image)
    argv = spec.create_argv(f"{PROJECT}-tunnel-stale")
    dead = str(2**22 + 4321)  # above any pid_max: the run that opened it is gone
    argv[argv.index(f"{tunnel.LABEL_PID}={os.getpid()}")] = f"{tunnel.LABEL_PID}={dead}"
    stale = run(argv, capture=True, quiet=True).stdout.strip()
    with open_tunnel(spec) as opened:
        assert _tunnels() == [opened.container[:12]]
    assert stale[:12] not in _tunnels()


def test_an_unreachable_service_is_named(served: tuple[str, str, bytes]) -> None:
    image, network, _ = served
    spec = TunnelSpec(PROJECT, "nothing", "nothing", 9, network, image, upstream_wait_s=2)
    with pytest.raises(TargetError, match="no tunnel to nothing"), open_tunnel(spec):
        pass
    assert _tunnels() == []
