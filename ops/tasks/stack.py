"""up: the main job — provision Docker, resolve every image, start the stack (or, where no
Docker engine can be had, the embedded single-process app)."""

from __future__ import annotations

from invoke import Context, task
from invoke.exceptions import Exit

from ops import docker_engine, embedded
from ops.host import HostError
from ops.images.resolve import resolve, write_env
from ops.paths import COMPOSE_DIR, STATE_DIR
from ops.tasks._util import exits_cleanly
from ops.tasks.images import print_resolved


@task(
    name="up",
    help={
        "embedded": "Skip Docker: run the whole app in one process (SQLite, local stores).",
        "port": "Port of the embedded app (default 8000).",
    },
)
@exits_cleanly
def up(c: Context, embedded_: bool = False, port: int = 8000) -> None:
    """Provision Docker, resolve images (local → pull → bake), start the stack; without
    Docker, start the embedded app instead."""
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
    resolved = resolve()
    env_file = write_env(resolved)
    print_resolved(resolved)
    print(f"\ncompose env file: {env_file.relative_to(STATE_DIR.parent)}")
    if not (COMPOSE_DIR / "docker-compose.yml").exists():
        print(
            "The compose stack itself is not in this revision yet (issue #4): the engine is "
            "up and every image the stack will run is resolved above. `invoke up "
            "--embedded` runs the application now."
        )
