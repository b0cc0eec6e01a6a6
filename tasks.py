"""Invoke tasks: `invoke --list` shows them all. Each is thin over a function in ops/."""

from __future__ import annotations

from invoke import Collection

from ops.tasks import docker, images, operations, secrets, stack, swarm

ns = Collection(stack.up, stack.down, stack.ps, stack.logs, stack.build)
# Operations: backup, restore, reindex, logs-clean (scripts/*.py through Invoke).
for operation in (operations.backup, operations.restore, operations.reindex, operations.logs_clean):
    ns.add_task(operation)
ns.add_collection(Collection.from_module(docker), name="docker")
ns.add_collection(Collection.from_module(images), name="images")
ns.add_collection(Collection.from_module(secrets), name="secrets")
ns.add_collection(Collection.from_module(swarm), name="swarm")
