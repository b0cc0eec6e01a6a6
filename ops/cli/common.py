"""What scripts/backup.py, restore.py, reindex.py and logclean.py share: choosing the target,
--json, and failures as one clear line (secrets scrubbed) with a non-zero exit status."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from coach.log import scrub
from ops.console import Reporter
from ops.data.target import OVERRIDE_PREFIX, ComposeTarget, ContainerTarget, Target, Writers
from ops.errors import CommandError, OpsError
from ops.stack.project import Project

EXPECTED = (OpsError, CommandError, ValueError, OSError)


def parser(doc: str | None) -> argparse.ArgumentParser:
    summary, _, details = (doc or "").strip().partition("\n\n")
    return argparse.ArgumentParser(
        description=summary,
        epilog=details,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line on stdout (events, progress, result), for automation",
    )


def add_target(parser: argparse.ArgumentParser, *, writers: bool = False) -> None:
    group = parser.add_argument_group(
        "target",
        "default: the development compose stack (project coach). Its data services are reached\n"
        "on the ports it publishes on 127.0.0.1; where none are published (production),\n"
        f"{OVERRIDE_PREFIX}<VARIABLE> environment variables say where they are, e.g.\n"
        f"{OVERRIDE_PREFIX}POSTGRES_PORT=15432 or {OVERRIDE_PREFIX}S3_ENDPOINT_URL=http://...",
    )
    group.add_argument("--prod", action="store_true", help="the production compose stack")
    group.add_argument("--project", metavar="NAME", help="compose project name (coach, coach-prod)")
    group.add_argument(
        "--postgres-container",
        metavar="ID",
        help="no compose stack: PostgreSQL runs in this container; the app's settings come from "
        "this process's environment (POSTGRES_HOST/PORT/PASSWORD, S3_*, QDRANT_*, DATA_DIR, or "
        "their *_FILE forms)",
    )
    if writers:
        group.add_argument(
            "--stop-cmd", metavar="CMD", help="with --postgres-container: stops the writers"
        )
        group.add_argument(
            "--start-cmd", metavar="CMD", help="with --postgres-container: starts them again"
        )
        group.add_argument(
            "--no-writers",
            action="store_true",
            help="with --postgres-container: nothing writes to these stores (already stopped)",
        )


def target_from(args: argparse.Namespace) -> Target:
    if args.postgres_container:
        writers = None
        if getattr(args, "no_writers", False):
            writers = Writers.none()
        elif getattr(args, "stop_cmd", None) and getattr(args, "start_cmd", None):
            writers = Writers.commands(args.stop_cmd, args.start_cmd)
        elif getattr(args, "stop_cmd", None) or getattr(args, "start_cmd", None):
            raise OpsError("--stop-cmd and --start-cmd go together")
        return ContainerTarget(args.postgres_container, dict(os.environ), writers)
    return ComposeTarget(Project("prod" if args.prod else "dev", project_name=args.project or None))


def run(body: Callable[[Reporter], None], *, json_lines: bool) -> int:
    """Run a command's body: 0 when it returns, 1 with one clear line when it fails."""
    reporter = Reporter(json_lines=json_lines)
    try:
        with _app_logs_to_stderr():
            body(reporter)
    except KeyboardInterrupt:
        reporter.error("interrupted")
        return 130
    except Exception as exc:
        message = scrub(str(exc))
        if not isinstance(exc, EXPECTED):
            # A bug, not an operational failure: show where, but only frames and source lines
            # (the message goes through scrub; it might carry a URL with a password).
            sys.stderr.write("".join(traceback.format_tb(exc.__traceback__)))
            message = f"{type(exc).__name__}: {message}"
        reporter.error(message or type(exc).__name__)
        return 1
    return 0


class _CurrentStderr:
    """Whatever sys.stderr is when a line is written (a test's capture comes and goes)."""

    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def _app_logs_to_stderr() -> Iterator[None]:
    """The app's own log lines (coach.* logs through structlog) go to stderr while a command
    runs: stdout is the command's output, JSON lines only with --json. Put back afterwards."""
    previous = structlog.get_config()
    stderr: Any = _CurrentStderr()  # PrintLogger calls only write() and flush()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(stderr))
    try:
        yield
    finally:
        structlog.configure(**previous)
