"""The tunnel into a stack's network (ops/data/tunnel.py) without Docker: what container it
asks for, and which leftovers the next run removes."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from ops.data import tunnel
from ops.data.tunnel import TunnelSpec

SPEC = TunnelSpec("coach-prod", "qdrant", "qdrant", 6333, "coach-prod_app", "coach/app:1.2")


def test_the_tunnel_container_is_hardened_labelled_and_published_on_loopback_only() -> None:
    argv = SPEC.create_argv("coach-prod-tunnel-qdrant-1")
    assert argv[:3] == ["docker", "create", "--rm"]
    joined = " ".join(argv[: argv.index("-c")])
    for flag in (
        "--read-only",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        f"--user {tunnel.APP_USER}",
        "--publish 127.0.0.1::6333",
        "--network bridge",  # the stack's `internal` network is connected before the start
        "--entrypoint python coach/app:1.2",
        "--label coach.tunnel=coach-prod",
        "--label coach.tunnel.service=qdrant",
        f"--label coach.tunnel.host={socket.gethostname()}",
        f"--label coach.tunnel.pid={os.getpid()}",
    ):
        assert flag in joined, flag
    # After the program: where to, and nothing else (no secret ever in a process argument).
    assert argv[argv.index("-c") + 1] == tunnel.FORWARDER
    assert argv[argv.index("-c") + 2 :] == ["qdrant", "6333", "6333", "30"]


def test_the_forwarder_is_valid_python() -> None:
    compile(tunnel.FORWARDER, "<tunnel>", "exec")


def test_the_sweep_removes_tunnels_of_dead_runs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    dead = 2**22 + 12345  # above any pid_max: no such process

    def docker(argv: list[str], **_: object) -> Any:
        calls.append(argv)
        listing = f"aaa {os.getpid()}\nbbb {dead}\nccc\n" if argv[1] == "ps" else ""
        return type("Done", (), {"stdout": listing})()

    monkeypatch.setattr(tunnel, "run", docker)
    assert tunnel.sweep("coach-prod") == ["bbb", "ccc"]
    assert "label=coach.tunnel=coach-prod" in calls[0]
    assert f"label=coach.tunnel.host={socket.gethostname()}" in calls[0]
    assert calls[1] == ["docker", "rm", "-f", "bbb", "ccc"]
