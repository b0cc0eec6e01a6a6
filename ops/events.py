"""What a long operation tells its operator: short lines on stderr for a person (the result on
stdout), or, with --json, one JSON object per line on stdout for automation. Events carry
counts, sizes, paths and names, never settings: nothing secret can reach either stream."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ops.console import say


class OpsError(RuntimeError):
    """An operation refused or failed in a way the message fully explains (no traceback)."""


@dataclass
class Reporter:
    json_lines: bool = False
    progress_every_s: float = 2.0
    _last_progress: dict[str, float] = field(default_factory=dict)

    def event(self, event: str, message: str = "", **fields: Any) -> None:
        """A step worth a line: `message` for people, `event` and `fields` for machines."""
        if self.json_lines:
            record = {"event": event, "time": datetime.now(UTC).isoformat()}
            record |= ({"message": message} if message else {}) | fields
            print(json.dumps(record, default=str), flush=True)
        elif message:
            say(message)

    def progress(self, step: str, message: str, *, done: bool = False, **fields: Any) -> None:
        """A progress line, at most one per `progress_every_s` per step (always the last)."""
        now = time.monotonic()
        if not done and now - self._last_progress.get(step, 0.0) < self.progress_every_s:
            return
        self._last_progress[step] = now
        self.event("progress", message, step=step, done=done, **fields)

    def result(self, text: str, **fields: Any) -> None:
        """The outcome: a table or summary on stdout for people, one `result` event for
        machines."""
        if self.json_lines:
            self.event("result", **fields)
        else:
            print(text, flush=True)

    def error(self, message: str) -> None:
        if self.json_lines:
            self.event("error", message)
        else:
            print(f"error: {message}", file=sys.stderr, flush=True)


def human_size(size: int) -> str:
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"
