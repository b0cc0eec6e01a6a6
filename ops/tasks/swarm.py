"""swarm.*: the production stack on Docker Swarm (docs/scale-out.md). Thin over ops/swarm/."""

from __future__ import annotations

from invoke import Context, task
from invoke.exceptions import Exit

from ops.console import table
from ops.swarm import cluster
from ops.tasks._util import exits_cleanly

STACK_HELP = "Stack name (default coach); its data volumes are named <stack>-*."


def _print_status(stack: str) -> None:
    headers = ["service", "mode", "replicas", "image", "last update", "ports"]
    print(table(headers, cluster.status_rows(stack)))


def _fail_on(failed: dict[str, str]) -> None:
    for service, why in failed.items():
        print(f"\n--- {service}: {why}")
    if failed:
        raise Exit(f"not settled: {', '.join(failed)}", code=1)


@task(
    help={
        "advertise_addr": "Address other nodes reach this one on (docker swarm init's flag).",
        "no_label": "Do not label this node for every role (edge, postgres, redis, ...).",
    }
)
@exits_cleanly
def init(c: Context, advertise_addr: str = "", no_label: bool = False) -> None:
    """Make this engine a one-node swarm (if it is not in one) and label it for every role."""
    created = cluster.init(advertise_addr or None, label=not no_label)
    print("swarm created" if created else "already in a swarm")
    if not no_label:
        print("node labels: " + ", ".join(f"coach.{r}=true" for r in cluster.NODE_LABELS))


@task(
    iterable=["profile"],
    help={
        "stack": STACK_HELP,
        "app_image": "Deploy this app image instead of building one (e.g. a registry tag).",
        "profile": "Compose profile to include (repeatable), e.g. observability.",
        "tls": "Serve HTTPS too (secrets tls_cert and tls_key).",
        "timeout": "Seconds to wait for every service to be healthy (default 600).",
    },
)
@exits_cleanly
def deploy(  # noqa: PLR0917 - one parameter per CLI flag
    c: Context,
    stack: str = "coach",
    app_image: str = "",
    profile: list[str] | None = None,
    tls: bool = False,
    timeout: int = 600,
) -> None:
    """Deploy or update the production stack on this swarm and wait until it is healthy.

    Renders the stack from the prod compose files, creates the secrets and configs that do not
    exist yet, deploys, waits for every service's replicas (updates roll one task at a time,
    and roll back by themselves if the new tasks do not get healthy), prints a status table."""
    result = cluster.deploy(
        stack,
        app_image=app_image or None,
        profiles=tuple(profile or ()),
        tls=tls,
        timeout=timeout,
    )
    for note in result.notes:
        print(f"note: {note}")
    if result.created:
        print(f"created {len(result.created)} secrets/configs: {', '.join(result.created)}")
    _print_status(stack)
    print(
        f"\n{'stack healthy' if result.ok else 'FAILED'} after {result.seconds:.0f}s "
        f"(stack file {result.stack_file.name}, app image {result.app_image})"
    )
    _fail_on(result.failed)


@task(
    iterable=["service"],
    help={"stack": STACK_HELP, "service": "SERVICE=N, repeatable, e.g. celery-worker=3."},
)
@exits_cleanly
def scale(c: Context, service: list[str], stack: str = "coach") -> None:
    """Set the number of replicas of services and wait until they run, e.g.
    `invoke swarm.scale --service celery-worker=3 --service backend=4`."""
    counts: dict[str, int] = {}
    for item in service:
        name, _, count = item.partition("=")
        if not count.isdigit():
            raise Exit(f"error: --service wants SERVICE=N, got {item!r}", code=2)
        counts[name] = int(count)
    if not counts:
        raise Exit("error: name at least one --service SERVICE=N", code=2)
    failed = cluster.scale(stack, counts)
    _print_status(stack)
    _fail_on(failed)


@task(
    iterable=["service"],
    help={"stack": STACK_HELP, "service": "Service to roll back (repeatable; default: backend)."},
)
@exits_cleanly
def rollback(c: Context, service: list[str] | None = None, stack: str = "coach") -> None:
    """Put services back on the spec they ran before their last update, one task at a time."""
    failed = cluster.rollback(stack, service or ["backend"])
    _print_status(stack)
    _fail_on(failed)


@task(help={"stack": STACK_HELP})
@exits_cleanly
def rm(c: Context, stack: str = "coach") -> None:
    """Remove the stack (services, networks, secrets, configs). Data volumes are kept."""
    volumes = cluster.remove(stack)
    print(f"stack {stack} removed")
    if volumes:
        print(
            "data volumes kept (delete with `docker volume rm` once you are sure): "
            + ", ".join(volumes)
        )
