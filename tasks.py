"""Invoke tasks: `invoke --list` shows them all. Each is a command of ops/cli, the same
definition scripts/*.py run; dotted names (images.resolve) become collections."""

from __future__ import annotations

from invoke import Collection

from ops.cli import COMMANDS

ns = Collection()
for command in COMMANDS:
    group, _, name = command.name.rpartition(".")
    if not group:
        ns.add_task(command.task(), name=name)
        continue
    if group not in ns.collections:
        ns.add_collection(Collection(group))
    ns.collections[group].add_task(command.task(), name=name)
