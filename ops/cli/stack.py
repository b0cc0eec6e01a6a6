"""up, down, ps, logs, build: the compose stack's command lines. `up` is the main job:
provision Docker, resolve every image, start the stack and report; where no engine can be had,
the embedded single-process app (development only: production never degrades to it)."""

from __future__ import annotations

import dataclasses
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.cli.common import ChangeOptions, JsonOption, StackOptions
from ops.cli.spec import Command, opt
from ops.console import Reporter, megabytes, say, table
from ops.data.backup import DEFAULT_ROOT, backup
from ops.data.target import ComposeTarget
from ops.errors import HostError, OpsError, StackError
from ops.host import engine
from ops.images.bake import image_size
from ops.stack import doctor, embedded, keys, secrets
from ops.stack import up as stacks
from ops.stack import upgrade as upgrades
from ops.stack.project import Project

STATUS_HEADERS = ["service", "state", "health", "image", "source", "size", "ports / note"]


@dataclass(frozen=True)
class UpOptions(StackOptions, JsonOption):
    profile: list[str] = opt(
        [], "compose profile to include (repeatable), e.g. observability", metavar="NAME"
    )
    tls: bool = opt(False, "serve HTTPS too (needs the secrets tls_cert and tls_key, see docs)")
    no_build: bool = opt(False, "do not rebuild the application image first")
    embedded: bool = opt(
        False, "skip Docker: the whole app in one process (SQLite, local stores; development)"
    )
    port: int = opt(8000, "port of the embedded app", metavar="PORT")
    allow_local_stores: bool = opt(
        False,
        "with --prod: where the Qdrant or MinIO image cannot be had, run on local stores, "
        "reported as degraded (/health, coach_degraded, AppDegradedLocalStores); without it, "
        "production refuses",
    )


def _status(project: Project, result: stacks.UpResult) -> list[dict[str, str]]:
    rows = []
    for service, state, health, image, source, ports in stacks.status_rows(
        project, result.resolved, result.left_out
    ):
        size = megabytes(image_size(image)) if state != "skipped" and image else "-"
        rows.append(dict(zip(STATUS_HEADERS, (service, state, health, image, source, size, ports),
                             strict=True)))  # fmt: skip
    return rows


def verdict(result: stacks.UpResult) -> str:
    """The status table's last line: healthy or not, and never silent about local stores."""
    said = "all services healthy" if result.ok else "FAILED"
    if result.degraded:
        said += f"; degraded: local stores ({', '.join(result.degraded)})"
    return said


def run_up(options: UpOptions, reporter: Reporter) -> None:
    use_embedded = options.embedded
    if use_embedded and options.prod:
        raise OpsError("--embedded is the development mode; production runs the compose stack")
    if not use_embedded:
        try:
            report = engine.ensure()
            reporter.event("engine", report.summary(), actions=report.actions)
        except HostError as exc:
            if options.prod:
                raise HostError(
                    f"Docker cannot be provisioned on this host: {exc}",
                    hint="production runs only on the compose stack; install a Docker engine "
                    "and Compose v2 (docs/deployment.md, prerequisites)",
                ) from exc
            say(
                f"Docker cannot be provisioned on this host: {exc}\n"
                "Falling back to the embedded app (one process, no containers)."
            )
            use_embedded = True
    if use_embedded:
        code = embedded.serve(port=options.port)
        if code:
            raise StackError(f"the embedded app exited with status {code}")
        return
    findings = doctor.diagnose(prod=options.prod, project_name=options.stack().name)
    if blocked := doctor.blockers(findings):
        reporter.result(doctor.render(blocked))
        raise HostError(
            f"the preflight found {len(blocked)} blocker(s): "
            + ", ".join(f"{f.check} ({f.detail})" for f in blocked),
            hint="`invoke doctor` shows every check",
        )
    project = options.stack(tuple(options.profile), tls=options.tls)
    result = stacks.up(
        project, build=not options.no_build, allow_local_stores=options.allow_local_stores
    )
    for note in result.notes:
        reporter.event("note", f"note: {note}", note=note)
    rows = _status(result.project, result)
    text = table(STATUS_HEADERS, [list(r.values()) for r in rows])
    text += f"\n\n{verdict(result)} after {result.seconds:.0f}s"
    for service, detail in result.failed.items():
        text += f"\n\n--- {service}: {detail}"
        if advice := stacks.hint(detail):
            text += f"\nhint: {advice}"
    reporter.result(
        text,
        ok=result.ok,
        project=result.project.name,
        seconds=round(result.seconds, 1),
        services=rows,
        failed={k: v.splitlines()[0] for k, v in result.failed.items()},
        notes=result.notes,
        degraded=result.degraded,
    )
    if not result.ok:
        raise StackError(f"unhealthy: {', '.join(result.failed)}")
    if (key := keys.dev_key_file(result.project)) and key.is_file():
        reporter.event("api_key", secrets.dev_api_key_note(key), file=str(key))


UP = Command(
    "up",
    UpOptions,
    run_up,
    """Provision Docker, resolve images, build, start the stack and wait until it is healthy.

Prints each service's state, health, image, image source, size and ports, and names what
failed with its last log lines. Where no Docker engine can be had, the development stack falls
back to the embedded single-process app; production (--prod) refuses instead. Where the
Qdrant or MinIO image cannot be had, development runs on local stores (a note says so);
production exits 1 naming each service and image, unless --allow-local-stores: then it runs
degraded, and the status line, /health and the alert AppDegradedLocalStores say so.

examples:
  ./run invoke up                                  # development, 127.0.0.1:8080
  ./run invoke up --profile observability          # plus Prometheus, Grafana, Jaeger...
  ./run invoke up --prod --tls                     # production file set, HTTPS
  ./run invoke up --embedded --port 8000           # no Docker at all
""",
)


@dataclass(frozen=True)
class DownOptions(StackOptions, ChangeOptions):
    volumes: bool = opt(
        False, "also delete the project's volumes (development data; production's are external)"
    )


def run_down(options: DownOptions, reporter: Reporter) -> None:
    project = options.stack()
    containers = [row.get("Name", "?") for row in project.ps()]
    volumes = project.volumes() if options.volumes else []
    plan = f"{len(containers)} container(s) of project {project.name}" + (
        f" and {len(volumes)} volume(s): {', '.join(volumes)}" if volumes else ""
    )
    if options.dry_run:
        reporter.result(
            f"dry run: would remove {plan}", containers=containers, volumes=volumes, dry_run=True
        )
        return
    if volumes:
        options.confirm(f"Remove {plan}? The volumes' data is gone for good.")
    stacks.down(project, volumes=options.volumes)
    reporter.result(f"removed {plan}", containers=containers, volumes=volumes)


DOWN = Command(
    "down",
    DownOptions,
    run_down,
    """Stop and remove the stack's containers, of every profile.

Production data volumes are external and always survive. --volumes also deletes the project's
own volumes (the development data): it asks first unless --yes; --dry-run names them.
""",
)


def run_ps(options: PsOptions, reporter: Reporter) -> None:
    rows: list[dict[str, Any]] = [
        {
            "service": row.get("Service", ""),
            "state": row.get("State", ""),
            "health": row.get("Health") or "-",
            "image": row.get("Image", ""),
            "ports": ", ".join(
                f"{p['URL']}:{p['PublishedPort']}->{p['TargetPort']}"
                for p in row.get("Publishers") or []
                if p.get("PublishedPort")
            ),
        }
        for row in sorted(options.stack().ps(), key=lambda r: str(r.get("Service")))
    ]
    headers = ["service", "state", "health", "image", "ports"]
    reporter.result(table(headers, [list(r.values()) for r in rows]), services=rows)


@dataclass(frozen=True)
class PsOptions(StackOptions, JsonOption):
    pass


PS = Command("ps", PsOptions, run_ps, "Show the stack's containers with state, health and ports.")


@dataclass(frozen=True)
class LogsOptions(StackOptions):
    service: list[str] = opt([], "only this service (repeatable)", short="s", metavar="NAME")
    follow: bool = opt(False, "keep following the logs", short="f")
    tail: int = opt(200, "lines per service to start with (0: all)", metavar="N")


def run_logs(options: LogsOptions, reporter: Reporter) -> None:
    args = ["logs", "--no-color"] + (["--tail", str(options.tail)] if options.tail else [])
    options.stack().run(*args, *(["--follow"] if options.follow else []), *options.service)


LOGS = Command(
    "logs",
    LogsOptions,
    run_logs,
    "Show the stack's logs (JSON lines from the app, nginx and the data services).",
)


@dataclass(frozen=True)
class BuildOptions(StackOptions):
    pass


def run_build(options: BuildOptions, reporter: Reporter) -> None:
    project = options.stack()
    stacks.prepare(project)
    stacks.build(project)


BUILD = Command(
    "build",
    BuildOptions,
    run_build,
    "Build the application image (one image for backend, worker, beat and migrate).",
)


@dataclass(frozen=True)
class UpgradeOptions(StackOptions, JsonOption):
    no_build: bool = opt(False, "pull the application image instead of building it here")
    backups_dir: Path = opt(
        DEFAULT_ROOT, "where the backup taken first goes", metavar="DIR", shown="./backups"
    )
    allow_local_stores: bool = opt(
        False, "with --prod: go on where the Qdrant or MinIO image cannot be had (as `up`)"
    )
    wait_timeout: int = opt(300, "seconds each service may take to get healthy", metavar="S")


def _retry_command(options: UpgradeOptions) -> str:
    words = ["./run invoke upgrade"]
    words += ["--prod"] if options.prod else []
    words += [f"--project {options.project}"] if options.project else []
    words += ["--no-build"] if options.no_build else []
    words += ["--allow-local-stores"] if options.allow_local_stores else []
    return " ".join(words)


def _steps_table(result: upgrades.UpgradeResult) -> str:
    rows = [(s.name, s.status, f"{s.seconds:.1f}s", s.detail) for s in result.steps]
    return table(["step", "result", "time", "detail"], rows)


def run_upgrade(options: UpgradeOptions, reporter: Reporter) -> None:
    engine.ensure()
    project = options.stack()

    def take_backup() -> Path:
        with closing(ComposeTarget(project)) as target:  # its tunnels close, also on Ctrl-C
            return backup(target, options.backups_dir, label="pre-upgrade", reporter=reporter).path

    try:
        result = upgrades.upgrade(
            project,
            take_backup=take_backup,
            build=not options.no_build,
            allow_local_stores=options.allow_local_stores,
            wait_timeout=options.wait_timeout,
            reporter=reporter,
        )
    except upgrades.UpgradeFailed as exc:
        failed = exc.result
        reporter.result(
            _steps_table(failed)
            + f"\n\nFAILED after {failed.seconds:.0f}s; "
            + (
                "rolled back to " + failed.rollback_image
                if failed.rolled_back
                else "NOT rolled back"
            )
            + ("; schema back at " + failed.from_revision if failed.schema_restored else "")
            + (f"\nthe backup taken first: {failed.backup}" if failed.backup else "")
            + f"\nretry: {_retry_command(options)}",
            ok=False,
            steps=[dataclasses.asdict(s) for s in failed.steps],
            backup=str(failed.backup) if failed.backup else None,
            rolled_back=failed.rolled_back,
            schema_restored=failed.schema_restored,
            retry=_retry_command(options),
        )
        raise
    reporter.result(
        _steps_table(result)
        + f"\n\nupgraded {project.name} in {result.seconds:.0f}s: schema "
        + f"{result.from_revision or 'none'} -> {result.to_revision}; backup {result.backup}",
        ok=True,
        project=project.name,
        steps=[dataclasses.asdict(s) for s in result.steps],
        backup=str(result.backup),
        from_revision=result.from_revision,
        to_revision=result.to_revision,
        seconds=round(result.seconds, 1),
    )


UPGRADE = Command(
    "upgrade",
    UpgradeOptions,
    run_upgrade,
    """Move the running stack to this checkout's code, keeping its data and serving throughout.

Preflight (engine, the stack running and healthy, disk, the schema revision known to this
code, images resolvable; the running release's compose model recorded under .state), the
running app image tagged <repo>:rollback-<project>, a backup (label pre-upgrade), the new
image built (--no-build: pulled), the migrate step once, the stores the app uses brought to
the new files, then backend, worker and beat recreated one at a time (the new backend starts
beside the old one), the rest of the stack in step, health verified. When a step after the
backup fails, the schema goes back down to the running revision and every service that ran
comes back from the recorded model on the tagged image; the result table names each step, the
backup and the command to retry; exit 1. Run it from a checkout of the new release beside the
running one: the recorded model is read from the files the stack was started from.

examples:
  ./run invoke upgrade                             # the development stack
  ./run invoke upgrade --prod                      # production (.env.prod, its secrets)
""",
)

COMMANDS = (UP, DOWN, PS, LOGS, BUILD, UPGRADE)
