"""Bringing the compose stack up and reporting on it: what `invoke up` does, callable by tests."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.console import say
from ops.errors import CommandError, StackError
from ops.images.resolve import Resolved, resolve, write_env
from ops.proc import run
from ops.stack import alerting, roles, secrets
from ops.stack.fallback import degraded_stores, write_fallback
from ops.stack.project import Project


@dataclass
class UpResult:
    project: Project
    resolved: list[Resolved]
    left_out: list[str]
    notes: list[str]
    seconds: float
    failed: dict[str, str] = field(default_factory=dict)  # service -> last log lines
    degraded: list[str] = field(default_factory=list)  # stores production runs locally

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class Prepared:
    resolved: list[Resolved]
    left_out: list[str]
    notes: list[str]
    # The compose model without the fallback override: services, roles and builds are the
    # same with it, so the steps after prepare need not ask compose again.
    config: dict[str, Any]
    alertmanager: secrets.Written  # its rendered config (ops/stack/alerting.py)
    degraded: list[str] = field(default_factory=list)  # stores production runs locally


def prepare(
    project: Project, *, allow_local_stores: bool = False
) -> tuple[list[Resolved], list[str], list[str]]:
    """Secrets, images and the fallback override: everything before `compose up`.
    Returns (resolved images, services left out, notes)."""
    done = prepare_stack(project, allow_local_stores=allow_local_stores)
    return done.resolved, done.left_out, done.notes


def prepare_stack(project: Project, *, allow_local_stores: bool = False) -> Prepared:
    """`prepare`, keeping the compose model it read. Production refuses to run on local stores
    (LocalStoresRefused) unless `allow_local_stores`."""
    if project.env == "dev":
        created = [w.name for w in secrets.generate("dev") if w.action == "created"]
        if created:
            say(f"generated development secrets: {', '.join(created)}")
    else:
        # SECRETS_DIR (the operator's own directory) wins over the default one.
        chosen = Path(project.environ()["SECRETS_DIR"])
        if not chosen.is_dir():
            raise StackError(
                f"no production secrets in {chosen}",
                hint="`invoke secrets.generate --prod`, or point SECRETS_DIR at yours",
            )
    rendered = alerting.write(project)
    resolved = resolve()
    write_env(resolved)
    # The fallback is derived from the compose files alone, never from an earlier fallback.
    project.fallback_file.unlink(missing_ok=True)
    config = project.config()
    degraded = degraded_stores(project.env, resolved, config, allow_local_stores=allow_local_stores)
    left_out, notes = write_fallback(project, resolved, config, degraded=degraded)
    return Prepared(resolved, left_out, notes, config, rendered, degraded)


def build(project: Project, config: dict[str, Any] | None = None) -> None:
    """Build what the stack builds here (the app image), as `up` does first. `config`: the
    project's compose model, if at hand."""
    project.run("build", *roles.build_targets(config if config is not None else project.config()))


def up(
    project: Project,
    *,
    build: bool = True,
    wait_timeout: int = 300,
    allow_local_stores: bool = False,
) -> UpResult:
    """Build, start and wait; the result names every service that did not get healthy."""
    started = time.monotonic()
    prepared = prepare_stack(project, allow_local_stores=allow_local_stores)
    config, left_out = prepared.config, prepared.left_out
    for note in prepared.notes:
        say(note)
    if endpoint := roles.otlp_endpoint(config, left_out):
        # Traces leave the app only when there is a receiver (its profile on, its image here).
        project = dataclasses.replace(
            project, overrides=(*project.overrides, ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint))
        )
    wanted = [s for s in config["services"] if s not in left_out]
    if project.env == "prod":
        _external_volumes(project)
    if build:
        project.run("build", *roles.build_targets(config))
    result = UpResult(
        project, prepared.resolved, left_out, prepared.notes, 0.0, degraded=prepared.degraded
    )
    with contextlib.suppress(CommandError):  # the status below names what failed
        project.run(
            "up",
            "--detach",
            "--wait",
            "--wait-timeout",
            str(wait_timeout),
            "--remove-orphans",
            *wanted,
        )
    if prepared.alertmanager.action == "replaced":
        # A container that compose left running still has the old config loaded: SIGHUP
        # reloads it (the file is rewritten in place, so its secret mount shows the new one).
        for service in (s for s in alerting.readers(config) if s in wanted):
            project.run("kill", "-s", "SIGHUP", service, check=False, quiet=True)
    result.seconds = time.monotonic() - started
    result.failed = unhealthy(project, wanted, config)
    return result


# Known failure signatures and what to do about them, printed under the failing service's logs.
HINTS = {
    "password authentication failed": (
        "PostgreSQL keeps the password it was initialised with: this volume predates the "
        "current secrets (regenerated, or another checkout). Put the old postgres_password "
        "back, or start over with `invoke down --volumes` (deletes this project's data)."
    ),
}


def hint(detail: str) -> str | None:
    return next((advice for marker, advice in HINTS.items() if marker in detail), None)


def unhealthy(
    project: Project, wanted: list[str], config: dict[str, Any] | None = None
) -> dict[str, str]:
    """service -> what is wrong and its last log lines, for each of `wanted` that is not
    healthy (one-shot services: not exited 0). `config`: the project's model, if at hand."""
    one_shot = roles.one_shot(config if config is not None else project.config())
    failed: dict[str, str] = {}
    by_service = {row["Service"]: row for row in project.ps()}
    for service in wanted:
        row = by_service.get(service)
        if row is None:
            problem = "not created"
        elif service in one_shot:
            problem = (
                ""
                if row.get("State") == "exited" and row.get("ExitCode") == 0
                else f"{row.get('State')} (exit {row.get('ExitCode')})"
            )
        elif row.get("State") != "running" or row.get("Health") not in ("healthy", ""):
            problem = f"{row.get('State')}/{row.get('Health') or 'no healthcheck'}"
        else:
            problem = ""
        if problem:
            logs = project.run(
                "logs", "--no-color", "--tail", "20", service, capture=True, check=False, quiet=True
            ).stdout
            failed[service] = f"{problem}\n{logs}"
    return failed


def status_rows(
    project: Project, resolved: list[Resolved], left_out: list[str]
) -> list[tuple[str, ...]]:
    """service, state, health, image, source, ports — one row per service, left-out ones too."""
    config: dict[str, Any] = project.config()
    one_shot = roles.one_shot(config)
    source_of = {r.ref: r.source for r in resolved}
    source_of.update({str(r.pinned): r.source for r in resolved})
    by_service = {row["Service"]: row for row in project.ps()}
    rows: list[tuple[str, ...]] = []
    for service, spec in sorted(config.get("services", {}).items()):
        image = str(spec.get("image", ""))
        row = by_service.get(service)
        if service in left_out:
            reason = next((r for r in resolved if r.ref == image or str(r.pinned) == image), None)
            rows.append(
                (
                    service,
                    "skipped",
                    "-",
                    image,
                    "unavailable",
                    f"image unobtainable here ({reason.detail if reason else 'n/a'})",
                )
            )
            continue
        state = row.get("State", "") if row else "absent"
        if row and service in one_shot and state == "exited":
            state = f"exited {row.get('ExitCode')}"
        health = (row.get("Health") or "-") if row else "-"
        ports = (
            ", ".join(
                f"{p['URL']}:{p['PublishedPort']}->{p['TargetPort']}"
                for p in (row.get("Publishers") or [])
                if row and p.get("PublishedPort")
            )
            if row
            else ""
        )
        source = "built" if "build" in spec else source_of.get(image, "?")
        rows.append((service, state, health, image, source, ports))
    return rows


def _external_volumes(project: Project) -> None:
    """Production data volumes live outside the project, so `down -v` cannot delete them."""
    for volume in project.config().get("volumes", {}).values():
        if volume.get("external"):
            run(["docker", "volume", "create", volume["name"]], capture=True, quiet=True)


def down(project: Project, *, volumes: bool = False) -> None:
    """Every service of the project, whatever profiles it was started with."""
    project = dataclasses.replace(project, profiles=("*",))
    args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
    project.run(*args)
