"""How the tooling talks: rich for a person at a terminal, plain lines in a pipe or a CI log,
JSON lines (one event each, on stdout) for a machine.

- `say` and `echo`: a step or a command, on stderr.
- `table`: a rich table on a terminal, plain aligned columns otherwise (CI logs, pipes).
- `Reporter`: what a long operation tells as it goes. On a terminal, progress bars with count,
  rate and ETA (when the total is known); otherwise a throttled line per step; with `--json`,
  `event`/`progress`/`result`/`error` objects on stdout and nothing else there.

Plain output whenever stdout is not a terminal, NO_COLOR is set or TERM is dumb. Events carry
counts, sizes, paths and names, never settings: nothing secret can reach either stream.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text


def interactive() -> bool:
    """A person at a terminal: stdout and stderr are TTYs, colours wanted, a capable TERM."""
    return (
        sys.stdout.isatty()
        and sys.stderr.isatty()
        and "NO_COLOR" not in os.environ
        and os.environ.get("TERM", "") != "dumb"
    )


def _stderr() -> Console:
    # Made per call: a test's captured stderr comes and goes, and rich binds its file.
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    if interactive():
        _stderr().print(Text("==> ", style="bold cyan") + Text(message))
    else:
        print(f"==> {message}", file=sys.stderr, flush=True)


def echo(argv: Sequence[str | Path]) -> None:
    """The command about to run, as a shell would take it (for commands we start ourselves)."""
    line = f"$ {shlex.join(str(a) for a in argv)}"
    if interactive():
        _stderr().print(Text(line, style="dim"))
    else:
        print(line, file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A table as text: rich's box drawing on a terminal, plain aligned columns otherwise."""
    cells = [[str(c) for c in row] for row in rows]
    if interactive():
        grid = Table(*headers, box=box.SIMPLE_HEAD, header_style="bold")
        for row in cells:
            grid.add_row(*(Text(c) for c in row))
        buffer = io.StringIO()
        width = Console().width
        Console(file=buffer, force_terminal=True, width=width).print(grid)
        return buffer.getvalue().rstrip("\n")
    every = [[str(h) for h in headers], *cells]
    widths = [max(len(row[i]) for row in every) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in every
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def megabytes(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


def human_size(size: float) -> str:
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size:.0f} B"


class _Rate(ProgressColumn):
    """Items (or bytes) per second since the step began."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if not elapsed or not task.completed:
            return Text("", style="progress.data.speed")
        rate = task.completed / elapsed
        unit = task.fields.get("unit", "")
        shown = f"{human_size(rate)}/s" if unit == "bytes" else f"{rate:,.0f} {unit}/s".strip()
        return Text(shown, style="progress.data.speed")


class _Count(ProgressColumn):
    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "bytes":
            done = human_size(task.completed)
            return Text(f"{done}/{human_size(task.total)}" if task.total else done)
        if task.total is None:
            return Text(f"{task.completed:,.0f}")
        return MofNCompleteColumn().render(task)


@dataclass
class Reporter:
    """The voice of one operation. `progress` lines are throttled to one per
    `progress_every_s` per step in plain and JSON modes; a bar redraws by itself."""

    json_lines: bool = False
    progress_every_s: float = 2.0
    bars: bool | None = None  # None: bars exactly when interactive()
    _last_progress: dict[str, float] = field(default_factory=dict)
    _progress: Progress | None = None
    _tasks: dict[str, TaskID] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.bars is None:
            self.bars = not self.json_lines and interactive()

    def event(self, event: str, message: str = "", **fields: Any) -> None:
        """A step worth a line: `message` for people, `event` and `fields` for machines."""
        if self.json_lines:
            record = {"event": event, "time": datetime.now(UTC).isoformat()}
            record |= ({"message": message} if message else {}) | fields
            print(json.dumps(record, default=str), flush=True)
        elif message:
            if self._progress is not None:
                self._progress.console.print(Text("==> ", style="bold cyan") + Text(message))
            else:
                say(message)

    def progress(
        self,
        step: str,
        message: str,
        *,
        done: bool = False,
        completed: float | None = None,
        total: float | None = None,
        unit: str = "",
        **fields: Any,
    ) -> None:
        """Where `step` stands: `completed` of `total` (when known) `unit`s. A bar on a
        terminal; otherwise a line at most every `progress_every_s` (always the last one)."""
        if self.bars:
            self._draw(step, message, done=done, completed=completed, total=total, unit=unit)
            return
        now = time.monotonic()
        if not done and now - self._last_progress.get(step, 0.0) < self.progress_every_s:
            return
        self._last_progress[step] = now
        numbers = {
            k: v
            for k, v in (("completed", completed), ("total", total), ("unit", unit or None))
            if v is not None
        }
        self.event("progress", message, step=step, done=done, **numbers, **fields)

    def _draw(
        self,
        step: str,
        message: str,
        *,
        done: bool,
        completed: float | None,
        total: float | None,
        unit: str,
    ) -> None:
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.fields[step]}"),
                BarColumn(),
                TaskProgressColumn(),
                _Count(),
                _Rate(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=_stderr(),
                transient=False,
            )
            self._progress.start()
        if step not in self._tasks:
            self._tasks[step] = self._progress.add_task(
                message, total=total, step=step, unit=unit, start=True
            )
        task = self._tasks[step]
        self._progress.update(
            task,
            description=message,
            completed=completed if completed is not None else 0,
            total=total,
        )
        if done:
            # The finished bar stays on screen at 100%: drawn now, not at the next refresh tick.
            final = total if total is not None else completed
            self._progress.update(task, completed=final or 0, total=final or 1)
            self._progress.stop_task(task)
            self._progress.refresh()
            del self._tasks[step]
            if not self._tasks:
                self.close()

    def close(self) -> None:
        """Stop drawing (before the result is printed, or when the operation ends)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()

    def result(self, text: str, **fields: Any) -> None:
        """The outcome: a table or summary on stdout for people, one `result` event for
        machines."""
        self.close()
        if self.json_lines:
            self.event("result", **fields)
        else:
            print(text, flush=True)

    def error(self, message: str, hint: str | None = None) -> None:
        self.close()
        if self.json_lines:
            self.event("error", message, **({"hint": hint} if hint else {}))
            return
        print(f"error: {message}", file=sys.stderr, flush=True)
        if hint:
            print(f"hint: {hint}", file=sys.stderr, flush=True)
