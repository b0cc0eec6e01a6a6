"""A short-lived TCP tunnel from this host into a stack's network.

Production publishes no data port, and the data services' network is `internal: true`, so this
host cannot reach Qdrant, the object store or PostgreSQL over TCP by itself. A tunnel is a
one-shot container of the app image (it has Python; nothing else is pulled) on Docker's
default bridge network and on the network the service is reachable on, running a tiny TCP
forwarder to the service, with its listening port published on 127.0.0.1 at a port the engine
picks. The tooling then talks to 127.0.0.1:<that port>. The same works on Docker Desktop,
where container addresses are not reachable from the host but published ports are.

The container is hardened (read-only, no capabilities, no-new-privileges, the app's non-root
user, small memory and pid limits) and removed when it stops (`--rm`). Its argv holds a host
name and port numbers only: whatever secret the protocol needs travels inside the connection.
Every tunnel is labelled with this host's name and the pid that opened it, so one left behind
by a killed run is removed by the next `open_tunnel` on the same host (`sweep`), without
touching those of a run still alive.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ops.errors import TargetError
from ops.proc import run

LABEL = "coach.tunnel"  # = the compose or stack project the tunnel leads into
LABEL_HOST = "coach.tunnel.host"
LABEL_PID = "coach.tunnel.pid"
LABEL_SERVICE = "coach.tunnel.service"
APP_USER = "10001:10001"  # the app image's user (Dockerfile)
READY = "tunnel ready"

# Waits for the service (it may still be starting), listens, says READY, then forwards each
# connection to the service until this container is stopped. argv: host port listen_port.
FORWARDER = """\
import asyncio, sys, time
host, port, listen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
async def serve(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    up_writer.close()
    writer.close()
async def main():
    deadline = time.monotonic() + float(sys.argv[4])
    while True:
        try:
            _, probe = await asyncio.open_connection(host, port)
            probe.close()
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                sys.exit(f"tunnel: {host}:{port} unreachable: {exc}")
            await asyncio.sleep(0.5)
    server = await asyncio.start_server(serve, "0.0.0.0", listen)
    print("tunnel ready", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


@dataclass(frozen=True)
class TunnelSpec:
    """Where to: `host:port` as seen on `network`, for `project`, in a container of `image`."""

    project: str
    service: str
    host: str
    port: int
    network: str
    image: str
    upstream_wait_s: float = 30

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL: self.project,
            LABEL_SERVICE: self.service,
            LABEL_HOST: socket.gethostname(),
            LABEL_PID: str(os.getpid()),
        }

    def create_argv(self, name: str) -> list[str]:
        """`docker create`: on the default bridge (an `internal` network publishes nothing),
        the stack's network is connected before the start."""
        argv = ["docker", "create", "--rm", "--name", name, "--network", "bridge"]
        argv += ["--publish", f"127.0.0.1::{self.port}"]
        argv += ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        argv += ["--user", APP_USER, "--memory", "64m", "--pids-limit", "32"]
        for key, value in self.labels.items():
            argv += ["--label", f"{key}={value}"]
        argv += ["--entrypoint", "python", self.image, "-c", FORWARDER]
        return [*argv, self.host, str(self.port), str(self.port), str(self.upstream_wait_s)]


@dataclass(frozen=True)
class Tunnel:
    container: str
    local_port: int

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.local_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(project: str) -> list[str]:
    """Remove this host's tunnels into `project` whose process is gone; returns their ids."""
    mine = [f"label={LABEL}={project}", f"label={LABEL_HOST}={socket.gethostname()}"]
    argv = ["docker", "ps", "-a", "--filter", mine[0], "--filter", mine[1]]
    argv += ["--format", f'{{{{.ID}}}} {{{{.Label "{LABEL_PID}"}}}}']
    listed = run(argv, capture=True, quiet=True).stdout.splitlines()
    stale = []
    for line in listed:
        match line.split():
            case [container, pid] if pid.isdigit() and not _alive(int(pid)):
                stale.append(container)
            case [container]:
                stale.append(container)
    if stale:
        run(["docker", "rm", "-f", *stale], capture=True, quiet=True, check=False)
    return stale


def _local_port(container: str, port: int) -> int:
    done = run(["docker", "port", container, f"{port}/tcp"], capture=True, quiet=True)
    for line in done.stdout.splitlines():  # "127.0.0.1:49153"
        if line.startswith("127.0.0.1:"):
            return int(line.rsplit(":", 1)[1])
    raise TargetError(f"tunnel {container[:12]}: no port published on 127.0.0.1 ({done.stdout!r})")


def _logs(container: str) -> str:
    done = run(["docker", "logs", container], check=False, capture=True, quiet=True)
    return done.stdout + done.stderr


def _wait_ready(spec: TunnelSpec, container: str, local_port: int, within_s: float) -> None:
    """READY in its output (the service answered from inside), then a connection from here."""
    deadline = time.monotonic() + within_s
    while True:
        logs = _logs(container)
        if READY in logs:
            try:
                socket.create_connection(("127.0.0.1", local_port), timeout=2).close()
                return
            except OSError:
                pass
        elif "No such container" in logs or "unreachable" in logs:
            raise TargetError(
                f"no tunnel to {spec.service} ({spec.host}:{spec.port} on network "
                f"{spec.network}): {logs.strip().splitlines()[-1] if logs.strip() else 'it exited'}"
            )
        if time.monotonic() > deadline:
            raise TargetError(
                f"the tunnel to {spec.service} accepted no connection within {within_s:.0f}s"
            )
        time.sleep(0.2)


@contextmanager
def open_tunnel(spec: TunnelSpec) -> Iterator[Tunnel]:
    """A tunnel to `spec.host:spec.port`, accepting connections on 127.0.0.1 when it is
    yielded; stopped (and so removed) on leaving, also on an error or Ctrl-C."""
    sweep(spec.project)
    name = f"{spec.project}-tunnel-{spec.service}-{uuid.uuid4().hex[:8]}"
    container = run(spec.create_argv(name), capture=True, quiet=True).stdout.strip()
    try:
        run(["docker", "network", "connect", spec.network, container], capture=True, quiet=True)
        run(["docker", "start", container], capture=True, quiet=True)
        local_port = _local_port(container, spec.port)
        _wait_ready(spec, container, local_port, spec.upstream_wait_s + 10)
        yield Tunnel(container, local_port)
    finally:
        run(["docker", "rm", "-f", container], capture=True, quiet=True, check=False)
