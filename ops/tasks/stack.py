"""up: the main job — provision Docker, resolve every image, start the stack."""

from __future__ import annotations

from invoke import Context, task

from ops import docker_engine
from ops.images.resolve import resolve, write_env
from ops.paths import COMPOSE_DIR, STATE_DIR
from ops.tasks._util import exits_cleanly
from ops.tasks.images import print_resolved


@task
@exits_cleanly
def up(c: Context) -> None:
    """Provision Docker, resolve images (local → pull → bake), then start the stack."""
    print(docker_engine.ensure().summary())
    resolved = resolve()
    env_file = write_env(resolved)
    print_resolved(resolved)
    print(f"\ncompose env file: {env_file.relative_to(STATE_DIR.parent)}")
    if not (COMPOSE_DIR / "docker-compose.yml").exists():
        print(
            "The compose stack itself is not in this revision yet (issue #4): the engine is "
            "up and every image the stack will run is resolved above."
        )
