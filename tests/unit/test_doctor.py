"""`invoke doctor`'s preflight: each check against a faked host, once for real on this one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from ops.host import doctor
from ops.host.doctor import GB, GIB, EngineInfo, Finding, Holder, Probe
from ops.host.engine import engine_answers
from ops.images.catalog import load_images
from ops.images.resolve import Resolved
from ops.paths import COMPOSE_DIR, ROOT
from ops.settings import OpsSettings, get_settings
from ops.stack import secrets

DATA_ROOT = Path("/srv/docker-data")
MODERN_ENGINE = EngineInfo("27.5.1", DATA_ROOT, "2", "overlay2")
# Variables the doctor reads from the shell: a developer's own must not leak into a test.
SHELL_VARIABLES = (
    "LLM_BASE_URL",
    "LLM_MAX_RETRIES",
    "SECRETS_DIR",
    "PROD_ENV_FILE",
    "HTTP_BIND",
    "HTTP_PORT",
    "COACH_DOCTOR_FAKE_FREE_DISK_BYTES",
    "COACH_PULL",
)


class FakeProbe(Probe):
    """A healthy host unless told otherwise; configuration paths stay real (see tests)."""

    def __init__(
        self,
        *,
        free: int = 50 * GB,
        engine: EngineInfo | str = MODERN_ENGINE,
        provisioning: str | None = None,
        published: dict[int, Holder] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(OpsSettings())
        self.free, self._engine, self.provisioning = free, engine, provisioning
        self.held = published or {}
        self.env = dict(env or {})

    def cpus(self) -> int:
        return 4

    def memory(self) -> tuple[int, int] | None:
        return 16 * GIB, 12 * GIB

    def engine(self) -> EngineInfo | str:
        return self._engine

    def compose_version(self) -> str | None:
        return "2.40.3"

    def host_cgroup_version(self) -> str:
        return "2"

    def engine_provisioning(self) -> str | None:
        return self.provisioning

    def free_disk(self, path: Path) -> int | None:
        return self.free

    def bind_error(self, address: str, port: int) -> int | None:
        return None

    def listening(self, port: int) -> bool:
        return False

    def published(self) -> dict[int, Holder]:
        return self.held

    def images(self) -> list[Resolved]:
        return [Resolved(var, ref, str(ref), "local") for var, ref in load_images().items()]

    def image_present(self, ref: str) -> bool:
        return True

    def environ(self) -> Mapping[str, str]:
        return self.env


@pytest.fixture(autouse=True)
def clean_shell(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in SHELL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def only(findings: list[Finding], check: str) -> Finding:
    [found] = [f for f in findings if f.check == check]
    return found


def prod_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, key: str) -> Path:
    """.env.prod copied from the example and prod secrets with this LLM key, under tmp_path."""
    env_file = tmp_path / ".env.prod"
    shutil.copyfile(COMPOSE_DIR / ".env.prod.example", env_file)
    monkeypatch.setenv("PROD_ENV_FILE", str(env_file))
    secrets.generate("prod", llm_api_key=key, root=tmp_path)
    return tmp_path / "prod"


def test_a_healthy_host_has_no_blocker() -> None:
    findings = doctor.diagnose(probe=FakeProbe())
    assert doctor.blockers(findings) == []
    assert {f.level for f in findings} == {"ok"}, doctor.render(findings)
    assert {"cpu", "memory", "engine", "disk", "compose", "cgroup", "port 8080"} <= {
        f.check for f in findings
    }


def test_low_free_disk_under_the_data_root_is_a_blocker() -> None:
    findings = doctor.diagnose(probe=FakeProbe(free=1 * GB))
    disk = only(findings, "disk")
    assert disk.level == "blocker"
    assert str(DATA_ROOT) in disk.detail
    assert doctor.blockers(findings) == [disk]
    assert "blocker" in doctor.render(findings)


def test_the_fake_free_disk_setting_replaces_the_measurement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COACH_DOCTOR_FAKE_FREE_DISK_BYTES", "1000000000")
    probe = Probe(OpsSettings())
    assert probe.free_disk(Path("/nonexistent")) == 1_000_000_000
    measured = Probe(OpsSettings(doctor_fake_free_disk_bytes=None))
    assert measured.free_disk(Path("/nonexistent")) is None
    assert (measured.free_disk(Path.cwd()) or 0) > 0


def test_an_engine_older_than_tested_is_a_warning() -> None:
    old = EngineInfo("19.03.15", DATA_ROOT, "1", "overlay2")
    engine = only(doctor.diagnose(probe=FakeProbe(engine=old)), "engine")
    assert engine.level == "warn"
    assert "19.03.15" in engine.detail
    assert "20.10" in engine.detail


def test_no_engine_is_a_warning_where_up_can_install_one_else_a_blocker() -> None:
    down = "Cannot connect to the Docker daemon"
    findings = doctor.diagnose(probe=FakeProbe(engine=down))
    engine = only(findings, "engine")
    assert engine.level == "warn"
    assert "`invoke up` installs and starts one" in engine.detail
    assert only(findings, "images").level == "warn"
    refused = FakeProbe(engine=down, provisioning="installing packages needs root")
    engine = only(doctor.diagnose(probe=refused), "engine")
    assert engine.level == "blocker"
    assert "installing packages needs root" in engine.detail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20.10.24+dfsg1", (20, 10, 24)),
        ("v2.40.3", (2, 40, 3)),
        ("2.40.3-desktop.1", (2, 40, 3)),
        ("28.0", (28, 0, 0)),
        ("dev", None),
    ],
)
def test_versions_parse_robustly(text: str, expected: tuple[int, int, int] | None) -> None:
    assert doctor.parse_version(text) == expected


def test_env_files_are_read_as_compose_reads_them(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nexport A=1\nB='two words'\nC=x # inline\nD=\nnot a line\n")
    assert doctor.dotenv(env_file) == {"A": "1", "B": "two words", "C": "x", "D": ""}
    assert doctor.dotenv(tmp_path / "missing") == {}


def test_prod_without_env_file_is_a_blocker_with_the_copy_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ops.stack.project.COMPOSE_DIR", tmp_path / "infra" / "compose")
    monkeypatch.setattr(doctor, "ROOT", tmp_path)
    secrets.generate("prod", root=tmp_path)
    findings = doctor.diagnose(
        prod=True, probe=FakeProbe(env={"SECRETS_DIR": str(tmp_path / "prod")})
    )
    env_file = only(findings, "config env file")
    assert env_file.level == "blocker"
    assert env_file.hint == "cp infra/compose/.env.prod.example infra/compose/.env.prod"
    assert doctor.blockers(findings) == [env_file]


def test_prod_without_secrets_is_a_blocker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prod_config(tmp_path, monkeypatch, key="sk-test")
    missing = FakeProbe(env={"SECRETS_DIR": str(tmp_path / "absent")})
    found = only(doctor.diagnose(prod=True, probe=missing), "config secrets")
    assert found.level == "blocker"
    assert "invoke secrets.generate --prod" in found.hint


def test_prod_with_an_llm_url_and_no_key_warns_of_503s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_dir = prod_config(tmp_path, monkeypatch, key="")
    findings = doctor.diagnose(prod=True, probe=FakeProbe(env={"SECRETS_DIR": str(secret_dir)}))
    llm = only(findings, "config llm")
    assert llm.level == "warn"
    assert "503" in llm.detail
    assert "https://api.openai.com/v1" in llm.detail
    assert "3 attempts" in llm.detail  # LLM_MAX_RETRIES=2 in the example
    assert doctor.blockers(findings) == []


def test_prod_with_a_key_or_no_llm_url_is_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_dir = prod_config(tmp_path, monkeypatch, key="sk-test")
    probe = FakeProbe(env={"SECRETS_DIR": str(secret_dir)})
    assert only(doctor.diagnose(prod=True, probe=probe), "config llm").level == "ok"
    (secret_dir / "llm_api_key").write_text("")
    offline = FakeProbe(env={"SECRETS_DIR": str(secret_dir), "LLM_BASE_URL": ""})
    llm = only(doctor.diagnose(prod=True, probe=offline), "config llm")
    assert llm.level == "ok"
    assert "extractive" in llm.detail


def test_a_port_held_by_another_process_is_a_blocker() -> None:
    class RealPorts(FakeProbe):
        bind_error = Probe.bind_error

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        findings = doctor.diagnose(ports=[port], probe=RealPorts())
    found = only(findings, f"port {port}")
    assert found.level == "blocker"
    assert str(port) in found.detail
    assert doctor.blockers(findings) == [found]


def test_a_port_held_by_this_stack_is_fine_by_another_container_not() -> None:
    ours = FakeProbe(published={8080: Holder("coach-nginx-1", "coach", "nginx")})
    found = only(doctor.diagnose(probe=ours), "port 8080")
    assert (found.level, found.detail) == ("ok", "127.0.0.1:8080 (nginx): in use by this stack")
    theirs = FakeProbe(published={8080: Holder("web", "other", "web")})
    found = only(doctor.diagnose(probe=theirs), "port 8080")
    assert found.level == "blocker"
    assert "HTTP_PORT" in found.hint


def test_port_variables_move_the_checked_port() -> None:
    probe = FakeProbe(env={"HTTP_PORT": "18080", "HTTP_BIND": "192.0.2.1"})
    found = only(doctor.diagnose(probe=probe), "port 18080")
    assert found.detail.startswith("192.0.2.1:18080 (nginx)")


def test_the_port_tables_follow_the_compose_files() -> None:
    dev = "".join(
        (COMPOSE_DIR / name).read_text()
        for name in ("docker-compose.yml", "docker-compose.override.yml")
    )
    prod = (COMPOSE_DIR / "docker-compose.prod.yml").read_text()
    for text, published in ((dev, doctor.DEV_PORTS), (prod, doctor.PROD_PORTS)):
        for _, bind_var, address, port_var, port in published:
            assert f"${{{port_var}:-{port}}}" in text
            bind = f"${{{bind_var}:-{address}}}" if bind_var else f"{address}:${{{port_var}"
            assert bind in text


def test_doctor_on_this_machine() -> None:
    if not engine_answers():
        pytest.skip("no Docker engine answers here")
    findings = doctor.diagnose()
    assert findings
    assert all(f.level in {"ok", "warn", "blocker"} for f in findings)
    assert only(findings, "engine").level == "ok"
    assert doctor.render(findings)


def test_invoke_doctor_exits_1_on_a_faked_low_disk() -> None:
    invoke = Path(sys.executable).parent / "invoke"
    listing = subprocess.run(
        [invoke, "--list"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120
    ).stdout
    if "doctor" not in {line.split()[0] for line in listing.splitlines() if line.strip()}:
        pytest.skip("invoke doctor task not wired yet")
    done = subprocess.run(
        [invoke, "doctor"],
        cwd=ROOT,
        env={**os.environ, "COACH_DOCTOR_FAKE_FREE_DISK_BYTES": "1000000000"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "blocker" in output
    assert "Traceback" not in output
