"""What backup, restore and reindex operate on: a "target" answers three questions.

1. Where does PostgreSQL run? A container id: pg_dump, pg_restore and psql run inside it
   (`docker exec`), the server's own client version, over its local socket (no password).
2. What are the app's settings, as seen from this host? Objects and vectors are reached through
   coach.objects / coach.vectors configured from them.
3. How are the writers (backend, worker, beat) stopped and started again around a restore?

Of the compose stack, the services are found by their labels (ops/stack/roles.py): PostgreSQL
is the coach.store=database service, the settings are those of the coach.settings one, and
the writers are the coach.role=writer ones.

Two kinds: the compose stack (`ComposeTarget`) and a bare postgres container with explicit
settings and writer callables (`ContainerTarget`, what the tests and other deployments use).
A target may hold resources (the compose stack's tunnels): `close()` releases them; use it as
`with contextlib.closing(target)`.
"""

from __future__ import annotations

import atexit
import os
import shlex
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from coach.settings import Settings
from ops.console import say
from ops.data.private import private_dir, write_private
from ops.data.tunnel import Tunnel, TunnelSpec, open_tunnel
from ops.errors import TargetError
from ops.proc import run
from ops.stack import roles
from ops.stack.project import Project

OVERRIDE_PREFIX = "COACH_TARGET_"  # COACH_TARGET_S3_ENDPOINT_URL=... wins over the stack's value


class Target(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def db_user(self) -> str: ...
    @property
    def db_name(self) -> str: ...
    @property
    def can_stop_writers(self) -> bool: ...
    def postgres_container(self) -> str: ...
    def pg_argv(self, *args: str, stdin: bool = False) -> list[str]:
        """How one of PostgreSQL's client tools runs against this target (`args[0]` the
        tool: pg_dump, pg_restore, psql); `stdin`: it reads its standard input."""
        ...

    def settings(self) -> Settings: ...
    def migration_settings(self) -> Settings:
        """The settings the migrate step runs with (schema owner, roles): may differ from the
        app's, whose database role changes rows only."""
        ...

    def stop_writers(self) -> list[str]:
        """Stop whatever writes to the stores; returns what was running (to start again)."""
        ...

    def start_writers(self, stopped: list[str]) -> None: ...
    def after_writes(self) -> None:
        """Called after the tooling wrote into the stores from this host (ownership fixes)."""
        ...

    def close(self) -> None:
        """Release what reaching the stores took (tunnels); the target is done."""
        ...


class _ExactSettings(Settings):
    """Settings from the given values only: not from this process's environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """The app's settings from a set of environment variables (NAME or NAME_FILE), exactly
    as the app would read them, without this process's own environment mixed in."""
    upper = {k.upper(): v for k, v in env.items()}
    values: dict[str, Any] = {}
    for name, info in Settings.model_fields.items():
        key = info.alias or name
        variable = key.upper()
        if variable in upper:
            values[key] = upper[variable]
        elif f"{variable}_FILE" in upper:
            path = Path(upper[f"{variable}_FILE"])
            try:
                values[key] = path.read_text().rstrip("\r\n")
            except OSError as exc:
                raise TargetError(f"{variable}_FILE={path}: {exc.strerror}") from exc
    return _ExactSettings(**values)


def docker_exec(container: str, *args: str, stdin: bool = False) -> list[str]:
    """A client tool run inside the server's container: the server's own version, over its
    local socket, so no password is handled here."""
    return ["docker", "exec", *(["-i"] if stdin else []), container, *args]


@dataclass
class Writers:
    """How to stop and start the processes that write (callables: tests, systemd, k8s...)."""

    stop: Callable[[], list[str]]
    start: Callable[[list[str]], None]

    @classmethod
    def none(cls) -> Writers:
        """The operator states that nothing writes (already stopped, or a copy of the data)."""
        return cls(lambda: [], lambda _stopped: None)

    @classmethod
    def commands(cls, stop: str, start: str) -> Writers:
        def stop_() -> list[str]:
            run(shlex.split(stop))
            return [stop]

        def start_(stopped: list[str]) -> None:
            if stopped:
                run(shlex.split(start))

        return cls(stop_, start_)


@dataclass
class ContainerTarget:
    """A postgres container by id, the app's settings as environment variables, and the
    writers as callables (None: this target cannot restore, only back up and reindex)."""

    container: str
    env: Mapping[str, str]
    writers: Writers | None = None
    migration_env: Mapping[str, str] | None = None  # None: `env` migrates too
    db_user: str = "coach"
    db_name: str = "coach"

    @property
    def name(self) -> str:
        return f"postgres container {self.container[:12]}"

    @property
    def can_stop_writers(self) -> bool:
        return self.writers is not None

    def postgres_container(self) -> str:
        return self.container

    def pg_argv(self, *args: str, stdin: bool = False) -> list[str]:
        return docker_exec(self.container, *args, stdin=stdin)

    def settings(self) -> Settings:
        return settings_from_env(self.env)

    def migration_settings(self) -> Settings:
        return settings_from_env(self.env if self.migration_env is None else self.migration_env)

    def stop_writers(self) -> list[str]:
        if self.writers is None:
            raise TargetError(f"{self.name}: no way to stop the writers was given")
        return self.writers.stop()

    def start_writers(self, stopped: list[str]) -> None:
        if self.writers is not None:
            self.writers.start(stopped)

    def after_writes(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class ComposeTarget:
    """The compose stack. A data service is reached on the port the stack publishes on
    127.0.0.1 (the development override does); one that publishes none (production) through a
    tunnel, a one-shot container on the service's network (ops/data/tunnel.py), open until
    `close()`. COACH_TARGET_<NAME> variables win over both (a remote stack, e.g.
    COACH_TARGET_S3_ENDPOINT_URL through an SSH tunnel). Where the stack runs on local stores
    (no Qdrant/MinIO image), DATA_DIR is the volume's mountpoint."""

    project: Project
    overrides: Mapping[str, str] = field(
        default_factory=lambda: {
            k.removeprefix(OVERRIDE_PREFIX): v
            for k, v in os.environ.items()
            if k.startswith(OVERRIDE_PREFIX)
        }
    )
    healthy_within_s: float = 180
    _config: dict[str, Any] | None = None
    _data_dir: Path | None = None
    _tunnels: dict[tuple[str, int], Tunnel] = field(default_factory=dict)
    _closing: ExitStack = field(default_factory=ExitStack)

    @property
    def name(self) -> str:
        return f"compose project {self.project.name}"

    @property
    def can_stop_writers(self) -> bool:
        return True

    @property
    def db_user(self) -> str:
        # Unset: the image's default superuser, which is named like the engine.
        return str(self._service_env(self._database()).get("POSTGRES_USER") or "postgres")

    @property
    def db_name(self) -> str:
        return str(self._service_env(self._database()).get("POSTGRES_DB") or self.db_user)

    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = self.project.config()
        return self._config

    def _database(self) -> str:
        return roles.store_service(self.config(), "database")

    def _service_env(self, service: str) -> dict[str, str]:
        spec = self.config().get("services", {}).get(service, {})
        return {k: "" if v is None else str(v) for k, v in (spec.get("environment") or {}).items()}

    def postgres_container(self) -> str:
        service = self._database()
        found = self.project.run("ps", "-q", service, capture=True, quiet=True).stdout.split()
        if not found:
            raise TargetError(f"{service} is not running in {self.name} (`invoke up` starts it)")
        return found[0]

    def pg_argv(self, *args: str, stdin: bool = False) -> list[str]:
        return docker_exec(self.postgres_container(), *args, stdin=stdin)

    def settings(self) -> Settings:
        return self._settings_of(roles.settings_service(self.config()))

    def migration_settings(self) -> Settings:
        return self._settings_of(roles.migrate_service(self.config()), stores=False)

    def _settings_of(self, service: str, *, stores: bool = True) -> Settings:
        """`stores=False`: the database only (the migrate step reaches no other store)."""
        env = self._secrets_resolved(self._service_env(service))
        env.pop("REDIS_HOST", None)  # not needed here; the app's Redis is no business of ours
        overrides = dict(self.overrides)
        published = self._published()
        if {"POSTGRES_HOST", "POSTGRES_PORT"} & overrides.keys():
            env["POSTGRES_HOST"] = "127.0.0.1"  # a tunnel's local end, unless overridden too
        else:
            host, port = self._reachable(
                published, env.get("POSTGRES_HOST", ""), int(env.get("POSTGRES_PORT") or 5432)
            )
            env |= {"POSTGRES_HOST": host, "POSTGRES_PORT": str(port)}
        for variable in ("QDRANT_URL", "S3_ENDPOINT_URL"):
            if env.get(variable) and variable not in overrides:
                env[variable] = self._reachable_url(published, env[variable])
        env |= overrides
        if stores and not (env.get("QDRANT_URL") and env.get("S3_ENDPOINT_URL")):
            self._data_dir = self._volume_dir(env.get("DATA_DIR", ""))
            env["DATA_DIR"] = str(self._data_dir)
        return settings_from_env(env)

    def _secrets_resolved(self, env: dict[str, str]) -> dict[str, str]:
        """NAME_FILE=/run/secrets/x -> NAME=<contents of x's file on this host>."""
        secrets = self.config().get("secrets", {})
        out: dict[str, str] = {}
        for key, value in env.items():
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                source = secrets.get(value.removeprefix("/run/secrets/"), {}).get("file")
                if not source:
                    raise TargetError(f"{key}={value}: no such secret file in {self.name}")
                out[key.removesuffix("_FILE")] = Path(source).read_text().rstrip("\r\n")
            else:
                out[key] = value
        return out

    def _published(self) -> dict[str, dict[int, int]]:
        """service -> {container port: port published on this host}."""
        ports: dict[str, dict[int, int]] = {}
        for row in self.project.ps():
            for pub in row.get("Publishers") or []:
                if pub.get("PublishedPort"):
                    ports.setdefault(row["Service"], {})[int(pub["TargetPort"])] = int(
                        pub["PublishedPort"]
                    )
        return ports

    def _reachable(
        self, published: dict[str, dict[int, int]], host: str, port: int
    ) -> tuple[str, int]:
        if host not in self.config().get("services", {}):
            return host, port  # outside the stack (a managed service): reachable as it is
        if port in published.get(host, {}):
            return "127.0.0.1", published[host][port]
        if (host, port) not in self._tunnels:
            spec = self.tunnel_spec(host, port)
            say(f"{host}:{port} is published on no host port: through a tunnel on {spec.network}")
            if not self._tunnels:  # a caller without close(): still closed at exit
                atexit.register(self.close)
            self._tunnels[host, port] = self._closing.enter_context(open_tunnel(spec))
        return self._tunnels[host, port].address

    def tunnel_spec(self, service: str, port: int) -> TunnelSpec:
        """A tunnel to `service:port`: the app's image, on the first network of the service's
        that the app shares (the one the app reaches it on)."""
        config = self.config()
        services = config.get("services", {})
        app = services[roles.settings_service(config)]
        mine = list(services[service].get("networks") or {"default": None})
        shared = [n for n in mine if n in (app.get("networks") or {"default": None})] or mine
        network = (config.get("networks", {}).get(shared[0]) or {}).get("name") or (
            f"{self.project.name}_{shared[0]}"
        )
        if not app.get("image"):
            raise TargetError(f"{self.name}: the app service names no image to tunnel with")
        return TunnelSpec(self.project.name, service, service, port, network, app["image"])

    def close(self) -> None:
        """Close the tunnels this target opened."""
        self._tunnels.clear()
        self._closing.close()

    def _reachable_url(self, published: dict[str, dict[int, int]], url: str) -> str:
        parts = urlsplit(url)
        default = 443 if parts.scheme == "https" else 80
        host, port = self._reachable(published, parts.hostname or "", parts.port or default)
        return urlunsplit(parts._replace(netloc=f"{host}:{port}"))

    def _volume_dir(self, data_dir: str) -> Path:
        """The host directory of the named volume mounted at the app's DATA_DIR."""
        app = self.config()["services"][roles.settings_service(self.config())]
        for mount in app.get("volumes") or []:
            if mount.get("type") == "volume" and data_dir and mount.get("target") == data_dir:
                volume = self.config().get("volumes", {}).get(mount["source"], {})
                name = volume.get("name") or f"{self.project.name}_{mount['source']}"
                done = run(
                    ["docker", "volume", "inspect", "--format", "{{.Mountpoint}}", name],
                    capture=True,
                    quiet=True,
                )
                return Path(done.stdout.strip())
        raise TargetError(
            f"the app in {self.name} keeps objects or vectors in DATA_DIR={data_dir or '(unset)'}"
            ", which is no volume this host can read"
        )

    def stop_writers(self) -> list[str]:
        running = {row["Service"] for row in self.project.ps() if row.get("State") == "running"}
        # The scheduled backups too: a backup of a half-restored state would look whole.
        stoppable = roles.writers(self.config()) + roles.backup_services(self.config())
        stopped = [s for s in stoppable if s in running]
        if stopped:
            try:
                self.project.run("stop", *stopped)
            except BaseException:
                self.project.run("start", *stopped)  # some may have stopped: all come back
                raise
        return stopped

    def start_writers(self, stopped: list[str]) -> None:
        if not stopped:
            return
        from ops.stack.up import unhealthy  # noqa: PLC0415 - only restores need it

        self.project.run("start", *stopped)
        deadline = time.monotonic() + self.healthy_within_s
        while failed := unhealthy(self.project, stopped, self.config()):
            if time.monotonic() > deadline:
                raise TargetError(f"not healthy after the restore: {', '.join(failed)}")
            time.sleep(3)
        say(f"healthy again: {', '.join(stopped)}")

    def after_writes(self) -> None:
        if self._data_dir is not None:
            own_like_top(self._data_dir)


def own_like_top(directory: Path) -> None:
    """Files this tool wrote into a local-stores volume belong to the app's user, as the rest
    of the volume (its top directory) does, or the app could not update them afterwards."""
    owner = directory.stat()
    for path in [directory, *directory.rglob("*")]:
        stat = path.lstat()
        if (stat.st_uid, stat.st_gid) != (owner.st_uid, owner.st_gid):
            os.lchown(path, owner.st_uid, owner.st_gid)


@dataclass
class InStackTarget:
    """The stores as a process inside the stack reaches them (the backup service,
    ops/data/scheduled.py): PostgreSQL's client tools run here, from PATH, against
    POSTGRES_HOST over the network, the password in a 0600 passfile made from the settings
    (never in an argument or a variable); objects and vectors as the settings say. It backs up
    only: the writers are the host's to stop."""

    env: Mapping[str, str]
    scratch: Path  # a private directory for the passfile (a tmpfs in the container)
    _settings: Settings | None = None
    _passfile: Path | None = None

    @property
    def name(self) -> str:
        settings = self.settings()
        return f"postgres at {settings.postgres_host}:{settings.postgres_port}"

    @property
    def db_user(self) -> str:
        return self.settings().postgres_user

    @property
    def db_name(self) -> str:
        return self.settings().postgres_db

    @property
    def can_stop_writers(self) -> bool:
        return False

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = settings_from_env(self.env)
            if not self._settings.postgres_host:
                raise TargetError("POSTGRES_HOST is not set: no database to back up")
        return self._settings

    def migration_settings(self) -> Settings:
        return self.settings()

    def postgres_container(self) -> str:
        raise TargetError(f"{self.name}: reached over the network, not through a container")

    def pg_argv(self, *args: str, stdin: bool = False) -> list[str]:
        del stdin  # a local process: its stdin is ours to feed either way
        settings = self.settings()
        variables = {
            "PGHOST": str(settings.postgres_host),
            "PGPORT": str(settings.postgres_port),
            "PGPASSFILE": str(self._write_passfile()),
            "PGCONNECT_TIMEOUT": str(max(1, round(settings.db_connect_timeout))),
        }
        return ["env", *(f"{k}={v}" for k, v in variables.items()), *args]

    def _write_passfile(self) -> Path:
        if self._passfile is None:
            settings = self.settings()

            def field(value: object) -> str:  # libpq's escapes of ':' and '\\'
                return str(value).replace("\\", "\\\\").replace(":", "\\:")

            line = ":".join(
                field(v)
                for v in (
                    settings.postgres_host,
                    settings.postgres_port,
                    "*",
                    settings.postgres_user,
                    settings.postgres_password.get_secret_value(),
                )
            )
            path = private_dir(self.scratch, parents=True, exist_ok=True) / "pgpass"
            path.unlink(missing_ok=True)
            write_private(path, (line + "\n").encode())
            self._passfile = path
        return self._passfile

    def stop_writers(self) -> list[str]:
        raise TargetError(f"{self.name}: backs up only, it cannot stop the writers")

    def start_writers(self, stopped: list[str]) -> None:
        pass

    def after_writes(self) -> None:
        """On local stores (the volume shared with the app, whose user owns it), what reading
        them created here (local mode's lock files, a missing directory) goes to that user."""
        settings = self.settings()
        if not (settings.qdrant_url and settings.s3_endpoint_url) and settings.data_dir.is_dir():
            own_like_top(settings.data_dir)

    def close(self) -> None:
        if self._passfile is not None:
            self._passfile.unlink(missing_ok=True)
            self._passfile = None
