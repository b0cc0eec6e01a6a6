"""The one error base of the operations tooling.

An `OpsError` is an operator's mistake or an unmet precondition: the CLIs print its message as
one `error:` line (and its `hint`, where one is known) and exit 1. Anything else that escapes a
command is a bug and keeps its traceback. This module imports nothing of ours: every room may
raise these.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class OpsError(RuntimeError):
    """A refusal or failure the message fully explains; `hint` says what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class HostError(OpsError):
    """The host lacks something we cannot provide (engine, package, permission, resources)."""


class CommandError(OpsError):
    """A command we ran exited non-zero; its last stderr line says why."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        detail = f": {stderr.splitlines()[-1]}" if stderr.strip() else ""
        super().__init__(f"`{shlex.join(self.argv)}` exited {returncode}{detail}")


class UsageError(OpsError):
    """A flag or argument value the command cannot take (exit 1, like every other refusal)."""


class ConfigError(OpsError):
    """A file or setting of this repository or the host is malformed or missing."""


class ImageError(OpsError):
    """An image cannot be had, saved, loaded or baked."""


class StackError(OpsError):
    """The compose stack cannot be prepared, started or inspected as asked."""


class SwarmError(OpsError):
    """The swarm is not in a state the operation needs (not a manager, labels missing...)."""


class TargetError(OpsError):
    """The data services of a target cannot be reached or operated on."""
