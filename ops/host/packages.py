"""Facts about the host and the one way we change it: Debian packages, installed as root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ops.console import say
from ops.errors import HostError
from ops.proc import run


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    if not path.exists():
        return {}
    fields: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value.strip().strip('"')
    return fields


def can_apt_install() -> str | None:
    """None when packages can be installed here, else the reason why not."""
    release = os_release()
    family = {release.get("ID", ""), *release.get("ID_LIKE", "").split()}
    if not family & {"debian", "ubuntu"}:
        return f"this host is {release.get('PRETTY_NAME', 'not Debian/Ubuntu')}, not Debian/Ubuntu"
    if os.geteuid() != 0:
        return "installing packages needs root (run as root or with sudo)"
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    return None


_apt_updated = False


def apt_install(packages: list[str], *, why: str) -> None:
    """Install Debian packages non-interactively; raise HostError with advice if impossible."""
    global _apt_updated  # noqa: PLW0603 - one `apt-get update` per process is enough
    reason = can_apt_install()
    if reason is not None:
        raise HostError(
            f"{why} needs the Debian package(s) {' '.join(packages)}, which cannot be "
            f"installed here: {reason}. Install the equivalent yourself."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say(f"installing {' '.join(packages)} ({why})")
    if not _apt_updated:
        run(["apt-get", "update", "-qq"], env=env)
        _apt_updated = True
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env)
