"""Provisioning decisions that must hold on hosts we cannot change."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.errors import HostError
from ops.host import engine as docker_engine
from ops.host import packages as host


def test_without_root_or_apt_the_user_is_told_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(docker_engine, "engine_answers", lambda: False)
    monkeypatch.setattr(
        "ops.host.engine.shutil.which",
        lambda name: None if name == "dockerd" else f"/usr/bin/{name}",
    )
    monkeypatch.setattr("ops.host.packages.os.geteuid", lambda: 1000)
    with pytest.raises(
        HostError,
        match=r"needs the Debian package\(s\) docker\.io, which cannot be installed here: "
        r"installing packages needs root.*Install the equivalent yourself",
    ):
        docker_engine.ensure()


def test_non_debian_hosts_are_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        host, "os_release", lambda: {"ID": "fedora", "PRETTY_NAME": "Fedora Linux 41"}
    )
    assert host.can_apt_install() == "this host is Fedora Linux 41, not Debian/Ubuntu"
    with pytest.raises(HostError, match="Fedora Linux 41, not Debian/Ubuntu"):
        host.apt_install(["docker.io"], why="the Docker engine")


def test_os_release_parsing(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('ID=ubuntu\nID_LIKE=debian\nPRETTY_NAME="Ubuntu 24.04 LTS"\n')
    assert host.os_release(release)["ID_LIKE"] == "debian"
    assert host.os_release(tmp_path / "missing") == {}


def test_stop_never_touches_an_engine_it_did_not_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pidfile = tmp_path / "dockerd.pid"
    monkeypatch.setattr(docker_engine, "PIDFILE", pidfile)
    assert "nothing stopped" in docker_engine.stop()
    pidfile.write_text("1\n")  # pid 1 is not a dockerd we started
    killed: list[int] = []
    monkeypatch.setattr("ops.host.engine.os.kill", lambda pid, sig: killed.append(pid))
    assert "nothing stopped" in docker_engine.stop()
    assert killed == []
    assert not pidfile.exists()


def test_a_known_failure_gets_advice() -> None:
    from ops.stack.up import hint  # noqa: PLC0415

    logs = 'migrate-1 | FATAL: password authentication failed for user "coach"'
    advice = hint(logs)
    assert advice is not None and "invoke down --volumes" in advice
    assert hint("migrate-1 | something else") is None
