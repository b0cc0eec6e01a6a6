"""Invoke tasks: `invoke --list` shows them all. Each is thin over a function in ops/."""

from __future__ import annotations

from invoke import Collection

from ops.tasks import docker, images, stack

ns = Collection(stack.up)
ns.add_collection(Collection.from_module(docker), name="docker")
ns.add_collection(Collection.from_module(images), name="images")
