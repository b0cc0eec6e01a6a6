"""Invoke tasks: `invoke --list` shows them all. Each is thin over a function in ops/."""

from __future__ import annotations

from invoke import Collection

from ops.tasks import docker, images, secrets, stack

ns = Collection(stack.up, stack.down, stack.ps, stack.logs, stack.build)
ns.add_collection(Collection.from_module(docker), name="docker")
ns.add_collection(Collection.from_module(images), name="images")
ns.add_collection(Collection.from_module(secrets), name="secrets")
