"""Options that mean the same in every command, spelled once: which stack (`--prod`,
`--project`), which data target, `--json`, and `--dry-run` / `--yes` for whatever deletes or
replaces something."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ops.cli.spec import opt
from ops.data.target import OVERRIDE_PREFIX, ComposeTarget, ContainerTarget, Target, Writers
from ops.errors import UsageError
from ops.stack.project import Project


@dataclass(frozen=True)
class JsonOption:
    json: bool = opt(
        False,
        "one JSON object per line on stdout (events, progress, result), for automation",
    )


@dataclass(frozen=True)
class StackOptions:
    prod: bool = opt(False, "the production stack: docker-compose.prod.yml, .env.prod, its secrets")
    project: str | None = opt(
        None,
        "compose project name (default: coach, or coach-prod with --prod)",
        metavar="NAME",
    )

    def stack(self, profiles: tuple[str, ...] = (), *, tls: bool = False) -> Project:
        return Project(
            "prod" if self.prod else "dev", profiles, tls=tls, project_name=self.project or None
        )


@dataclass(frozen=True)
class TargetOptions(StackOptions):
    postgres_container: str | None = opt(
        None,
        "no compose stack: PostgreSQL runs in this container, and the app's settings come from "
        "this process's environment (POSTGRES_HOST/PORT/PASSWORD, S3_*, QDRANT_*, DATA_DIR or "
        f"their *_FILE forms). Without it, a stack's data services are reached on the ports it "
        "publishes on 127.0.0.1, else through a short-lived tunnel container on its network; "
        f"{OVERRIDE_PREFIX}<VARIABLE> wins over both",
        metavar="ID",
    )

    def target(self) -> Target:
        if self.postgres_container:
            return ContainerTarget(self.postgres_container, dict(os.environ), self.writers())
        return ComposeTarget(self.stack())

    def writers(self) -> Writers | None:
        return None


@dataclass(frozen=True)
class WriterOptions(TargetOptions):
    stop_cmd: str | None = opt(
        None, "with --postgres-container: the command that stops the writers", metavar="CMD"
    )
    start_cmd: str | None = opt(
        None, "with --postgres-container: the command that starts them again", metavar="CMD"
    )
    no_writers: bool = opt(
        False, "with --postgres-container: nothing writes to these stores (already stopped)"
    )

    def writers(self) -> Writers | None:
        if self.no_writers:
            return Writers.none()
        if self.stop_cmd and self.start_cmd:
            return Writers.commands(self.stop_cmd, self.start_cmd)
        if self.stop_cmd or self.start_cmd:
            raise UsageError("--stop-cmd and --start-cmd go together")
        return None


@dataclass(frozen=True)
class ChangeOptions:
    dry_run: bool = opt(
        False, "say what would be deleted or replaced, and change nothing", short="n"
    )
    yes: bool = opt(False, "go ahead without asking", short="y")

    def confirm(self, question: str, *, word: str = "yes") -> None:
        """Ask on a terminal unless --yes; without a terminal, --yes is the only way."""
        if self.yes:
            return
        if sys.stdin.isatty():
            try:
                answer = input(f"{question}\nType '{word}' to go ahead: ")
            except EOFError:  # Ctrl-D: no answer is no
                answer = ""
            if answer.strip() == word:
                return
            raise UsageError("not confirmed; nothing changed")
        raise UsageError(
            f"{question} Not confirmed: pass --yes to go ahead (--dry-run shows what would "
            "change); nothing changed"
        )
