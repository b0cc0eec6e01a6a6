"""Progress as an operator sees it, through the commands they run (`invoke backup`, `invoke
reindex`) against a real PostgreSQL container: on a terminal, rich progress bars; piped, plain
`==> ` lines with no escape codes; with --json, JSON lines only on stdout, the progress events
carrying completed/total."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.ops_target import postgres_container_id
from tests.support.processes import ROOT
from tests.support.stack import Stack

BAR = "━"  # rich's bar glyph
PERCENT = re.compile(r"\b\d{1,3}%")
ESCAPE = "\x1b["
TIMEOUT_S = 300
# What could make rich colour a pipe or plain a terminal, whatever the test's own environment.
OVERRIDES = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")


@pytest.fixture(scope="module")
def stack_with_data(app_stack: Stack) -> Stack:
    """A few snippets, indexed: rows, objects and points to show progress over."""
    body = "\n".join(f"def step_{i}(state):\n    return state + {i}" for i in range(60))
    ids = [app_stack.upload(f"p{n}.py", f"# p{n}\n{body}")["id"] for n in range(3)]
    for sid in ids:
        app_stack.wait_indexed(sid)
    return app_stack


def _invoke(stack: Stack, task: str, *args: str) -> list[str]:
    """The task as an operator types it, run from the repository (where tasks.py is)."""
    return [
        sys.executable,
        "-m",
        "invoke",
        task,
        "--postgres-container",
        postgres_container_id(stack),
        *args,
    ]


def _env(stack: Stack) -> dict[str, str]:
    """The app's settings as the environment, on a terminal that can draw (TERM=xterm)."""
    env = {k: v for k, v in stack.env.items() if k not in OVERRIDES}
    return env | {"TERM": "xterm"}


def _on_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run with stdin, stdout and stderr on one pseudo-terminal, 50x160; all it drew."""
    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    try:
        proc = subprocess.Popen(
            argv,
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    finally:
        os.close(secondary)  # the child's copies only: EOF (EIO) once it and its own exit
    drawn = bytearray()
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO on Linux: no process holds the terminal any more
                break
            if not chunk:
                break
            drawn += chunk
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{argv[3]} did not finish in {TIMEOUT_S}s:\n{drawn.decode()[-2000:]}")
        code = proc.wait(30)
    finally:
        os.close(primary)
    text = drawn.decode(errors="replace")
    assert code == 0, text[-4000:]
    return text


def _piped(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def test_on_a_terminal_backup_and_reindex_draw_progress_bars(
    stack_with_data: Stack, tmp_path: Path
) -> None:
    env = _env(stack_with_data)
    backup = _on_terminal(_invoke(stack_with_data, "backup", "--dest", str(tmp_path)), env)
    reindex = _on_terminal(_invoke(stack_with_data, "reindex", "--batch", "4"), env)

    for drawn in (backup, reindex):
        assert ESCAPE in drawn, "drawn with escape codes: a live display"
        # A quick step may finish between two redraws: its last frame need not be 100%.
        assert BAR in drawn and PERCENT.search(drawn), drawn[-4000:]
    assert re.search(r"objects\S* .*\d+/3\b", backup), "the objects bar counts n of 3"
    assert "postgres" in backup, "one bar per step, named"
    assert re.search(r"reindex\S* .*\d+/\d+", reindex), reindex[-4000:]


def test_piped_they_print_plain_lines(stack_with_data: Stack, tmp_path: Path) -> None:
    env = _env(stack_with_data)
    for args in (("backup", "--dest", str(tmp_path)), ("reindex", "--batch", "4")):
        done = _piped(_invoke(stack_with_data, *args), env)
        assert any(line.startswith("==> ") for line in done.stderr.splitlines()), done.stderr
        for stream in (done.stdout, done.stderr):
            assert ESCAPE not in stream and BAR not in stream, stream
    assert "==> reindex complete" in done.stderr


def _events(stdout: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in stdout.splitlines()]
    assert events and all("event" in e for e in events), stdout
    return events


def test_with_json_stdout_holds_only_json_lines(stack_with_data: Stack, tmp_path: Path) -> None:
    env = _env(stack_with_data)
    backup = _events(
        _piped(_invoke(stack_with_data, "backup", "--dest", str(tmp_path), "--json"), env).stdout
    )
    reindex = _events(
        _piped(_invoke(stack_with_data, "reindex", "--batch", "4", "--json"), env).stdout
    )

    for events, unit in ((backup, "objects"), (reindex, "points")):
        assert events[-1]["event"] == "result"
        counted = [e for e in events if e["event"] == "progress" and e.get("unit") == unit]
        assert counted and all({"completed", "total"} <= e.keys() for e in counted), events
        assert counted[-1]["done"] and counted[-1]["completed"] == counted[-1]["total"] > 0
    dumped = [e for e in backup if e["event"] == "progress" and e["step"] == "postgres"]
    assert dumped[-1]["unit"] == "bytes" and dumped[-1]["completed"] == dumped[-1]["bytes"] > 0
