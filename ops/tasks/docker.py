"""docker.*: provision and stop the Docker engine this project runs on."""

from __future__ import annotations

from invoke import Context, task

from ops.host import engine as docker_engine
from ops.tasks._util import exits_cleanly


@task
@exits_cleanly
def ensure(c: Context) -> None:
    """Make a Docker engine and Compose v2 answer (installs and starts them on Debian as root)."""
    print(docker_engine.ensure().summary())


@task
@exits_cleanly
def stop(c: Context) -> None:
    """Stop the dockerd that docker.ensure started (never an engine started by someone else)."""
    print(docker_engine.stop())
