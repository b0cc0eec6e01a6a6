"""Running the commands the tooling is made of (docker, compose, apt-get): no shell, the
command echoed unless quiet, a non-zero exit raised as CommandError with its last stderr line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ops.console import echo
from ops.errors import CommandError


def run(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    capture: bool = False,
    quiet: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command without a shell; echo it unless quiet; raise CommandError on failure."""
    args = [str(a) for a in argv]
    if not quiet:
        echo(args)
    try:
        done = subprocess.run(
            args,
            check=False,
            text=True,
            capture_output=capture,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            input=input_text,
        )
    except FileNotFoundError as exc:
        raise CommandError(args, 127, f"{args[0]}: command not found") from exc
    if check and done.returncode != 0:
        raise CommandError(args, done.returncode, (done.stderr or "").strip())
    return done


def ask(
    argv: Sequence[str | Path], *, timeout: float = 30
) -> subprocess.CompletedProcess[str] | None:
    """A read-only question to a tool (`docker info`, `... version`): its answer whatever the
    exit status, or None when the tool is missing or does not answer in time."""
    try:
        return run(argv, check=False, capture=True, quiet=True, timeout=timeout)
    except (CommandError, subprocess.TimeoutExpired):
        return None


def json_listing(text: str) -> list[dict[str, Any]]:
    """A docker or compose `--format json` listing: one object per line, or (older versions,
    some subcommands) one JSON array."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines()]
