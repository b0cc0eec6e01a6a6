"""`invoke doctor`'s preflight, each check against a faked host and a hand-made compose model.
CI runs these without an engine or the Compose plugin: the Probe is faked whole, and any
command left unfaked fails the test (the live checks: tests/integration/test_doctor_live.py)."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ops.errors import CommandError, OpsError
from ops.images.catalog import load_images
from ops.images.resolve import Resolved
from ops.paths import COMPOSE_DIR
from ops.settings import OpsSettings, get_settings
from ops.stack import doctor, fallback, secrets
from ops.stack.doctor import GB, GIB, EngineInfo, Finding, Holder, Probe, Publish

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


def ports_entry(published: int, host_ip: str | None = "127.0.0.1", **extra: Any) -> dict[str, Any]:
    """A `ports` entry as `docker compose config --format json` renders it."""
    entry = {"mode": "ingress", "target": published, "published": str(published)}
    return entry | {"protocol": "tcp"} | ({"host_ip": host_ip} if host_ip else {}) | extra


def service(role: str, *ports: dict[str, Any], **labels: str) -> dict[str, Any]:
    """A service's model: coach.role, coach.<label> (image_var: coach.image-var), ports."""
    extra = {f"coach.{k.replace('_', '-')}": v for k, v in labels.items()}
    return {"labels": {"coach.role": role} | extra, "ports": list(ports)}


# Made-up service names: the doctor must know services only from the model it is given.
DEV_CONFIG: dict[str, Any] = {
    "services": {
        "app": service("writer", app="true", settings="true"),
        "db": service("data", ports_entry(5432), store="database"),
        "edge": service("edge", ports_entry(8080)),
        "vectors": service(
            "data",
            ports_entry(6333),
            store="vectors",
            fallback="local-stores",
            image_var="QDRANT_IMAGE",
        ),
        "objects": service(
            "data",
            ports_entry(9000),
            ports_entry(9001),
            store="objects",
            fallback="local-stores",
            image_var="MINIO_IMAGE",
        ),
        "objects-init": service("one-shot", fallback="local-stores", image_var="MINIO_IMAGE"),
        "traces": service("observability", fallback="optional", image_var="JAEGER_IMAGE"),
    }
}
PROD_CONFIG: dict[str, Any] = {
    "services": DEV_CONFIG["services"]
    | {name: {**DEV_CONFIG["services"][name], "ports": []} for name in ("db", "vectors", "objects")}
    | {"edge": service("edge", ports_entry(80, doctor.ANY_ADDRESS, target=8080))}
}


class FakeProbe(Probe):
    """A healthy host unless told otherwise; the configuration's paths stay real (no engine
    needed for them: see the prod tests), its compose model is hand-made."""

    def __init__(
        self,
        *,
        free: int = 50 * GB,
        engine: EngineInfo | str = MODERN_ENGINE,
        provisioning: str | None = None,
        published: dict[int, Holder] | None = None,
        env: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | OpsError | None = None,
        unavailable: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(OpsSettings())
        self.free, self._engine, self.provisioning = free, engine, provisioning
        self.held = published or {}
        self.env = dict(env or {})
        self._config, self.unavailable = config, unavailable
        self.configs_read: list[bool] = []

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
        return [
            Resolved(var, ref, str(ref), "unavailable" if var in self.unavailable else "local")
            for var, ref in load_images().items()
        ]

    def image_present(self, ref: str) -> bool:
        return True

    def environ(self) -> Mapping[str, str]:
        return self.env

    def config(self, prod: bool) -> dict[str, Any]:
        self.configs_read.append(prod)
        if isinstance(self._config, OpsError):
            raise self._config
        return dict(self._config or (PROD_CONFIG if prod else DEV_CONFIG))


@pytest.fixture(autouse=True)
def clean_shell(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in SHELL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def no_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """No docker (or any other) command: a Probe method left unfaked fails here, not in CI."""

    def refuse(argv: object, **_: object) -> NoReturn:
        raise AssertionError(f"a unit test ran {argv}: fake it in FakeProbe")

    for module in ("ops.stack.doctor", "ops.stack.project", "ops.images.resolve"):
        monkeypatch.setattr(f"{module}.run", refuse)


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
    probe = FakeProbe(env={"SECRETS_DIR": str(tmp_path / "prod")})
    findings = doctor.diagnose(prod=True, probe=probe)
    env_file = only(findings, "config env file")
    assert env_file.level == "blocker"
    assert env_file.hint == "cp infra/compose/.env.prod.example infra/compose/.env.prod"
    assert doctor.blockers(findings) == [env_file]
    # Compose would refuse without the file: the ports wait for it, the blocker says why.
    assert probe.configs_read == []
    ports = only(findings, "ports")
    assert (ports.level, ports.detail) == (
        "warn",
        "not checked: the compose config needs infra/compose/.env.prod (see config env file)",
    )


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
    findings = doctor.diagnose(prod=True, probe=probe)
    assert only(findings, "config llm").level == "ok"
    assert probe.configs_read == [True]
    assert only(findings, "port 80").detail == "0.0.0.0:80 (edge): free"
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
    assert not [f for f in findings if f.check == "port 8080"]  # `ports=` replaces the model's


def test_a_port_held_by_this_stack_is_fine_by_another_container_not() -> None:
    ours = FakeProbe(published={8080: Holder("coach-edge-1", "coach", "edge")})
    found = only(doctor.diagnose(probe=ours), "port 8080")
    assert (found.level, found.detail) == ("ok", "127.0.0.1:8080 (edge): in use by this stack")
    theirs = FakeProbe(published={8080: Holder("web", "other", "web")})
    found = only(doctor.diagnose(probe=theirs), "port 8080")
    assert found.level == "blocker"
    assert found.hint == (
        "stop it, or move the port (HTTP_PORT and the other port variables in docs/deployment.md)"
    )


def test_the_checked_ports_are_the_ones_the_model_publishes() -> None:
    config = {
        "services": {
            "edge": service("edge", ports_entry(18080, "192.0.2.1"), ports_entry(443, None)),
            "dns": service("edge", ports_entry(53, protocol="udp")),  # the checks bind TCP
            "ephemeral": service("data", {"target": 7000, "protocol": "tcp"}),
            "ranged": service("data", ports_entry(9000) | {"published": "9000-9001"}),
        }
    }
    assert doctor.published_ports(config) == [
        Publish("edge", doctor.ANY_ADDRESS, 443),
        Publish("ranged", "127.0.0.1", 9000),
        Publish("ranged", "127.0.0.1", 9001),
        Publish("edge", "192.0.2.1", 18080),
    ]
    findings = doctor.diagnose(probe=FakeProbe(config=config))
    assert only(findings, "port 18080").detail == "192.0.2.1:18080 (edge): free"
    assert only(findings, "port 443").detail.startswith("0.0.0.0:443 (edge)")
    assert [f.check for f in findings if f.check.startswith("port")] == [
        "port 443",
        "port 9000",
        "port 9001",
        "port 18080",
    ]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            CommandError(["docker", "compose", "config"], 1, "noise\nfailed to read .env.prod"),
            "failed to read .env.prod",
        ),
        (CommandError(["docker"], 127, "docker: command not found"), "docker: command not found"),
        (OpsError("no compose here"), "no compose here"),
    ],
)
def test_an_unreadable_config_leaves_the_ports_unchecked(error: OpsError, reason: str) -> None:
    findings = doctor.diagnose(probe=FakeProbe(config=error))
    ports = only(findings, "ports")
    assert (ports.level, ports.detail) == (
        "warn",
        f"not checked: the compose config could not be read ({reason})",
    )
    assert not [f for f in findings if f.check.startswith("port ")]
    assert doctor.blockers(findings) == []


def test_fallbacks_are_said_from_the_labels() -> None:
    gone = frozenset({"QDRANT_IMAGE", "MINIO_IMAGE", "JAEGER_IMAGE"})
    findings = doctor.diagnose(probe=FakeProbe(unavailable=gone))
    details = {f.check: f.detail.partition("failing that, ")[2] for f in findings}
    assert details["image qdrant"] == "vectors left out: the app keeps vectors in Qdrant local mode"
    assert details["image minio"] == (
        "objects, objects-init left out: the app keeps objects in a local object directory"
    )
    assert details["image jaeger"] == "traces left out of its profile"
    assert {f.hint for f in findings if f.check.startswith("image")} == {""}


def test_in_prod_a_local_stores_fallback_hints_at_getting_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_dir = prod_config(tmp_path, monkeypatch, key="sk-test")
    gone = frozenset({"QDRANT_IMAGE", "JAEGER_IMAGE"})
    probe = FakeProbe(env={"SECRETS_DIR": str(secret_dir)}, unavailable=gone)
    findings = doctor.diagnose(prod=True, probe=probe)
    assert "let this host pull it, or images.load it" in only(findings, "image qdrant").hint
    assert only(findings, "image jaeger").hint == ""  # optional: production lacks only it


def test_labels_up_would_refuse_are_a_blocker() -> None:
    config = {"services": {**DEV_CONFIG["services"], "newcomer": {"labels": {}}}}
    findings = doctor.diagnose(probe=FakeProbe(config=config))
    labels = only(findings, "config labels")
    assert labels.level == "blocker"
    assert "newcomer (no coach.role)" in labels.detail


def test_every_local_store_of_the_fallback_has_the_doctors_words() -> None:
    assert doctor.LOCAL_STORE_WORDS.keys() == fallback.LOCAL_STORES.keys()
