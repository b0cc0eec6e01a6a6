"""PostgreSQL's client tools, run inside the server's container (`docker exec`): their version
is the server's own, and they connect over its local socket, so no password is handled here.
Dumps stream between that container and a file on this host."""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ops.console import echo
from ops.data.manifest import CHUNK, TABLES
from ops.data.target import Target
from ops.errors import CommandError
from ops.proc import run

Progress = Callable[[int], None]  # bytes so far


def exec_argv(target: Target, *args: str, stdin: bool = False) -> list[str]:
    return ["docker", "exec", *(["-i"] if stdin else []), target.postgres_container(), *args]


def psql(target: Target, sql: str) -> list[str]:
    """Rows of a query, fields separated by '|', without headers."""
    argv = exec_argv(
        target, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", target.db_user, "-d",
        target.db_name, "-c", sql,
    )  # fmt: skip
    return run(argv, capture=True, quiet=True).stdout.splitlines()


def tool_version(target: Target, tool: str) -> str:
    return run(exec_argv(target, tool, "--version"), capture=True, quiet=True).stdout.strip()


# Table names are our own constants, never input.
COUNTS_SQL = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES)  # noqa: S608
REVISION_SQL = "SELECT version_num FROM alembic_version"


def counts(target: Target) -> dict[str, int]:
    [line] = psql(target, COUNTS_SQL)
    return dict(zip(TABLES, map(int, line.split("|")), strict=True))


class Snapshot:
    """A REPEATABLE READ transaction held open by psql, its snapshot exported: pg_dump and
    our queries (row counts, revision) then see one and the same state of the database."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.id = ""
        self._psql: subprocess.Popen[str] | None = None
        self._argv: list[str] = []

    def __enter__(self) -> Snapshot:
        self._argv = exec_argv(
            self.target, "psql", "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1", "-U",
            self.target.db_user, "-d", self.target.db_name, stdin=True,
        )  # fmt: skip
        self._psql = subprocess.Popen(
            self._argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot()"
        self.id = self.query(begin)
        return self

    def query(self, sql: str) -> str:
        """One row of one query, inside the snapshot (psql answers each line as it comes)."""
        assert self._psql is not None and self._psql.stdin and self._psql.stdout
        self._psql.stdin.write(sql.rstrip(";") + ";\n")
        self._psql.stdin.flush()
        line = self._psql.stdout.readline()
        if not line:
            stderr = self._psql.stderr.read() if self._psql.stderr else ""
            raise CommandError(self._argv, self._psql.wait(), stderr)
        return line.rstrip("\n")

    def __exit__(self, *_: object) -> None:
        if self._psql is None:
            return
        if self._psql.stdin and not self._psql.stdin.closed:
            try:
                self._psql.stdin.write("COMMIT;\n")
                self._psql.stdin.close()
            except BrokenPipeError:
                pass
        self._psql.wait(30)


@contextmanager
def _stderr_file() -> Iterator[IO[bytes]]:
    """Errors to a file, not a pipe: a chatty tool could fill a pipe nobody drains while we
    stream its data, and both sides would wait forever."""
    with tempfile.TemporaryFile() as err:
        yield err


def _failed(argv: list[str], code: int, err: IO[bytes]) -> CommandError:
    err.seek(0)
    return CommandError(argv, code, err.read().decode(errors="replace").strip())


def dump(target: Target, path: Path, *, snapshot: str = "", progress: Progress) -> str:
    """pg_dump -Fc into `path`; returns its sha256, computed on the way."""
    argv = exec_argv(
        target, "pg_dump", "-Fc", "-U", target.db_user, "-d", target.db_name,
        *([f"--snapshot={snapshot}"] if snapshot else []),
    )  # fmt: skip
    echo(argv)
    digest, written = hashlib.sha256(), 0
    with _stderr_file() as err, path.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        while block := proc.stdout.read(CHUNK):
            out.write(block)
            digest.update(block)
            written += len(block)
            progress(written)
        if code := proc.wait():
            raise _failed(argv, code, err)
    return digest.hexdigest()


def _feed(argv: list[str], path: Path, progress: Progress | None) -> None:
    """Stream a file into a command's stdin. A tool that stops reading early (pg_restore -l
    after the table of contents) is fine: its exit code decides."""
    echo(argv)
    with _stderr_file() as err, path.open("rb") as source:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert proc.stdin is not None
        sent = 0
        try:
            while block := source.read(CHUNK):
                proc.stdin.write(block)
                sent += len(block)
                if progress is not None:
                    progress(sent)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        if code := proc.wait():
            raise _failed(argv, code, err)


def check_archive(target: Target, path: Path) -> None:
    """The server's pg_restore can read the archive's table of contents (format, version)."""
    _feed(exec_argv(target, "pg_restore", "--list", stdin=True), path, None)


def restore(target: Target, path: Path, *, progress: Progress) -> None:
    """All or nothing: one transaction, stopping at the first error; the dump's objects are
    dropped first (--clean --if-exists) and recreated."""
    argv = exec_argv(
        target, "pg_restore", "--clean", "--if-exists", "--single-transaction",
        "--exit-on-error", "--no-password", "-U", target.db_user, "-d", target.db_name,
        stdin=True,
    )  # fmt: skip
    _feed(argv, path, progress)
    psql(target, "ANALYZE")  # fresh planner statistics: pg_restore leaves none
