"""How the tooling talks to its operator: short progress lines on stderr, commands echoed."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def echo(argv: Sequence[str | Path]) -> None:
    """The command about to run, as a shell would take it (for commands we start ourselves)."""
    print(f"$ {shlex.join(str(a) for a in argv)}", file=sys.stderr, flush=True)


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


class CommandError(RuntimeError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        detail = f": {stderr.splitlines()[-1]}" if stderr else ""
        super().__init__(f"`{shlex.join(self.argv)}` exited {returncode}{detail}")


def json_listing(text: str) -> list[dict[str, Any]]:
    """A docker or compose `--format json` listing: one object per line, or (older versions,
    some subcommands) one JSON array."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines()]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (no colours: it lands in CI logs and pipes too)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def megabytes(size: int) -> str:
    return f"{size / 1e6:.0f} MB"
