"""The command lines, one definition per operation; the top room. Imports every other room.

Each module defines `Command`s (ops/cli/spec.py): a typed options dataclass and a body. tasks.py
turns them into Invoke tasks; scripts/*.py run the same definitions through argparse. Nothing
below this room knows about command lines.
"""

from __future__ import annotations

from typing import Any

from ops.cli import data, host, images, keys, kubernetes, secrets, stack, swarm
from ops.cli.spec import Command

COMMANDS: tuple[Command[Any], ...] = (
    *stack.COMMANDS,
    *data.COMMANDS,
    *host.COMMANDS,
    *images.COMMANDS,
    *secrets.COMMANDS,
    *keys.COMMANDS,
    *swarm.COMMANDS,
    *kubernetes.COMMANDS,
)
