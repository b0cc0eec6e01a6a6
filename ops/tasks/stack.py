"""up, down, ps, logs, build: the compose stack. `up` is the main job: provision Docker,
resolve every image, start the stack and report; without Docker, the embedded app."""

from __future__ import annotations

from invoke import Context, task
from invoke.exceptions import Exit

from ops.console import megabytes, table
from ops.errors import HostError
from ops.host import engine as docker_engine
from ops.images.bake import image_size
from ops.stack import embedded
from ops.stack import up as stacks
from ops.stack.project import Env, Project
from ops.tasks._util import exits_cleanly


def _env(prod: bool) -> Env:
    return "prod" if prod else "dev"


@task(
    name="up",
    iterable=["profile"],
    help={
        "prod": "Production: docker-compose.prod.yml instead of the development override.",
        "profile": "Compose profile to include (repeatable), e.g. observability.",
        "embedded": "Skip Docker: run the whole app in one process (SQLite, local stores).",
        "port": "Port of the embedded app (default 8000).",
        "no_build": "Do not rebuild the application image first.",
        "tls": "Serve HTTPS on 8443 too (needs secrets tls_cert and tls_key, see docs).",
    },
)
@exits_cleanly
def up(  # noqa: PLR0917 - one parameter per CLI flag
    c: Context,
    prod: bool = False,
    profile: list[str] | None = None,
    embedded_: bool = False,
    port: int = 8000,
    no_build: bool = False,
    tls: bool = False,
) -> None:
    """Provision Docker, resolve images, build, start the stack and wait until it is healthy.

    Prints each service's state, health, image, image source, size and ports; names what failed
    with its last log lines. Without a Docker engine: the embedded single-process app."""
    if not embedded_:
        try:
            print(docker_engine.ensure().summary())
        except HostError as exc:
            print(
                f"Docker cannot be provisioned on this host: {exc}\n"
                "Falling back to the embedded app (one process, no containers).",
                flush=True,
            )
            embedded_ = True
    if embedded_:
        raise Exit(code=embedded.serve(port=port))
    result = stacks.up(Project(_env(prod), tuple(profile or ()), tls=tls), build=not no_build)
    _print_status(result.project, result)
    print(f"\n{'all services healthy' if result.ok else 'FAILED'} after {result.seconds:.0f}s")
    for note in result.notes:
        print(f"note: {note}")
    if not result.ok:
        for service, detail in result.failed.items():
            print(f"\n--- {service}: {detail}")
            if advice := stacks.hint(detail):
                print(f"hint: {advice}")
        raise Exit(f"unhealthy: {', '.join(result.failed)}", code=1)


def _print_status(project: Project, result: stacks.UpResult) -> None:
    rows = stacks.status_rows(project, result.resolved, result.left_out)
    sized = []
    for row in rows:
        service, state, health, image, source, ports = row
        size = megabytes(image_size(image)) if state != "skipped" and image else "-"
        sized.append((service, state, health, image, source, size, ports))
    print(table(["service", "state", "health", "image", "source", "size", "ports / note"], sized))


@task(help={"prod": "The production project.", "volumes": "Also delete volumes (dev data!)."})
@exits_cleanly
def down(c: Context, prod: bool = False, volumes: bool = False) -> None:
    """Stop and remove the stack's containers (production data volumes always survive)."""
    stacks.down(Project(_env(prod)), volumes=volumes)


@task(help={"prod": "The production project."})
@exits_cleanly
def ps(c: Context, prod: bool = False) -> None:
    """Show the stack's containers with state and health."""
    Project(_env(prod)).run("ps", "--all")


@task(
    iterable=["service"],
    help={
        "service": "Only these services (repeatable).",
        "prod": "The production project.",
        "follow": "Keep following the logs.",
    },
)
@exits_cleanly
def logs(
    c: Context, service: list[str] | None = None, prod: bool = False, follow: bool = False
) -> None:
    """Show the stack's logs (JSON lines from the app, nginx and the data services)."""
    args = ["logs", "--no-color", "--tail", "200"] + (["--follow"] if follow else [])
    Project(_env(prod)).run(*args, *(service or []))


@task(help={"prod": "Build with the production file set (the same image)."})
@exits_cleanly
def build(c: Context, prod: bool = False) -> None:
    """Build the application image (one image for backend, worker, beat and migrate)."""
    project = Project(_env(prod))
    stacks.prepare(project)
    project.run("build", "backend")
