"""swarm.*: the production stack on Docker Swarm (docs/scale-out.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ops.cli.common import ChangeOptions, JsonOption
from ops.cli.spec import Command, opt
from ops.console import Reporter, table
from ops.errors import SwarmError, UsageError
from ops.stack import roles
from ops.swarm import cluster

DEFAULT_STACK = "coach"
STATUS_HEADERS = ["service", "mode", "replicas", "image", "last update", "ports"]


@dataclass(frozen=True)
class SwarmOptions:
    project: str = opt(
        DEFAULT_STACK, "stack name; its data volumes are named <name>-*", metavar="NAME"
    )


def _status(stack: str) -> tuple[str, list[dict[str, str]]]:
    rows = [dict(zip(STATUS_HEADERS, row, strict=True)) for row in cluster.status_rows(stack)]
    return table(STATUS_HEADERS, [list(r.values()) for r in rows]), rows


def _settled(reporter: Reporter, stack: str, failed: dict[str, str], **fields: object) -> None:
    text, rows = _status(stack)
    for service, why in failed.items():
        text += f"\n\n--- {service}: {why}"
    reporter.result(text, services=rows, failed=failed, **fields)
    if failed:
        raise SwarmError(f"not settled: {', '.join(failed)}")


@dataclass(frozen=True)
class InitOptions:
    advertise_addr: str | None = opt(
        None, "address other nodes reach this one on (docker swarm init's flag)", metavar="ADDR"
    )
    no_label: bool = opt(False, "do not label this node for every role (edge, postgres, ...)")


def run_init(options: InitOptions, reporter: Reporter) -> None:
    created = cluster.init(options.advertise_addr, label=not options.no_label)
    text = "swarm created" if created else "already in a swarm"
    if not options.no_label:
        text += "\nnode labels: " + ", ".join(cluster.node_labels())
    reporter.result(text, created=created)


@dataclass(frozen=True)
class DeployOptions(SwarmOptions, JsonOption):
    app_image: str | None = opt(
        None, "deploy this app image instead of building one (e.g. a registry tag)", metavar="REF"
    )
    profile: list[str] = opt(
        [], "compose profile to include (repeatable), e.g. observability", metavar="NAME"
    )
    tls: bool = opt(False, "serve HTTPS too (secrets tls_cert and tls_key)")
    timeout: int = opt(600, "seconds to wait for every service to be healthy", metavar="S")


def run_deploy(options: DeployOptions, reporter: Reporter) -> None:
    result = cluster.deploy(
        options.project,
        app_image=options.app_image,
        profiles=tuple(options.profile),
        tls=options.tls,
        timeout=options.timeout,
    )
    for note in result.notes:
        reporter.event("note", f"note: {note}", note=note)
    if result.created:
        reporter.event(
            "created",
            f"created {len(result.created)} secrets/configs: {', '.join(result.created)}",
            names=result.created,
        )
    reporter.event(
        "deployed",
        f"{'stack healthy' if result.ok else 'FAILED'} after {result.seconds:.0f}s "
        f"(stack file {result.stack_file.name}, app image {result.app_image})",
        ok=result.ok,
        seconds=round(result.seconds, 1),
        app_image=result.app_image,
    )
    _settled(reporter, options.project, result.failed, ok=result.ok, app_image=result.app_image)


@dataclass(frozen=True)
class ScaleOptions(SwarmOptions):
    service: list[str] = opt(
        [], "SERVICE=N, repeatable, e.g. celery-worker=3", short="s", metavar="SERVICE=N"
    )


def run_scale(options: ScaleOptions, reporter: Reporter) -> None:
    counts: dict[str, int] = {}
    for item in options.service:
        name, _, count = item.partition("=")
        if not name or not count.isdigit():
            raise UsageError(f"--service wants SERVICE=N, got {item!r}")
        counts[name] = int(count)
    if not counts:
        raise UsageError("name at least one --service SERVICE=N")
    _settled(reporter, options.project, cluster.scale(options.project, counts))


@dataclass(frozen=True)
class RollbackOptions(SwarmOptions):
    service: list[str] = opt(
        [],
        "service to roll back (repeatable; default: every writer, the services the app image runs)",
        short="s",
        metavar="NAME",
    )


def run_rollback(options: RollbackOptions, reporter: Reporter) -> None:
    services = options.service or roles.writers(cluster.project_for(options.project).config())
    failed = cluster.rollback(options.project, services)
    _settled(reporter, options.project, failed)


@dataclass(frozen=True)
class RmOptions(SwarmOptions, ChangeOptions):
    pass


def run_rm(options: RmOptions, reporter: Reporter) -> None:
    stack = options.project
    services = [cluster.short_name(stack, s) for s in cluster.services(stack)]
    if not services:
        raise SwarmError(f"no stack {stack!r} on this swarm", hint="`docker stack ls` lists them")
    plan = f"stack {stack}: {len(services)} service(s) ({', '.join(sorted(services))}), its "
    plan += "networks, secrets and configs; data volumes are kept"
    if options.dry_run:
        reporter.result(f"dry run: would remove {plan}", services=services, dry_run=True)
        return
    options.confirm(f"Remove {plan}?")
    volumes = cluster.remove(stack)
    text = f"stack {stack} removed"
    if volumes:
        text += (
            "\ndata volumes kept (delete with `docker volume rm` once you are sure): "
            + ", ".join(volumes)
        )
    reporter.result(text, volumes=volumes)


INIT = Command(
    "swarm.init",
    InitOptions,
    run_init,
    "Make this engine a one-node swarm (if it is not in one) and label it for every role.",
)
DEPLOY = Command(
    "swarm.deploy",
    DeployOptions,
    run_deploy,
    """Deploy or update the production stack on this swarm and wait until it is healthy.

Renders the stack from the prod compose files, creates the secrets and configs that do not
exist yet, deploys, waits for every service's replicas (updates roll one task at a time, and
roll back by themselves if the new tasks do not get healthy), prints a status table.
""",
)
SCALE = Command(
    "swarm.scale",
    ScaleOptions,
    run_scale,
    """Set the number of replicas of services and wait until they run.

example: ./run invoke swarm.scale --service celery-worker=3 --service backend=4
""",
)
ROLLBACK = Command(
    "swarm.rollback",
    RollbackOptions,
    run_rollback,
    "Put services back on the spec they ran before their last update, one task at a time.",
)
RM = Command(
    "swarm.rm",
    RmOptions,
    run_rm,
    """Remove the stack (services, networks, secrets, configs). Data volumes are kept.

It asks first unless --yes; --dry-run names what would go.
""",
)

COMMANDS = (INIT, DEPLOY, SCALE, ROLLBACK, RM)
