"""What every task module shares: turning our errors into clean CLI exits."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from invoke.exceptions import Exit

from ops.errors import CommandError, HostError

P = ParamSpec("P")
R = TypeVar("R")


def exits_cleanly(func: Callable[P, R]) -> Callable[P, R]:
    """Report expected failures as one clear line and exit 1, not as a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (HostError, CommandError, ValueError) as exc:
            raise Exit(f"error: {exc}", code=1) from exc

    return wrapper
