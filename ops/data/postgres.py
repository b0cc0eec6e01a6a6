"""PostgreSQL's client tools, run where the target says (Target.pg_argv): from the host, inside
the server's container (`docker exec`: the server's own version, its local socket, no password
handled here); from the backup service, its own copy of the server's tools over the network.
Dumps stream between the tool and a file of this process."""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from ops.console import echo, say
from ops.data.manifest import CHUNK, TABLES
from ops.data.private import private_open
from ops.data.target import Target
from ops.errors import CommandError, TargetError
from ops.proc import run

Progress = Callable[[int], None]  # bytes so far
Fed = Callable[[int, int], None]  # bytes of the file sent so far, stderr lines counted so far

# pg_restore --verbose names each table-of-contents entry it restores on one stderr line:
# "creating TABLE ...", "processing data for table ...", "executing SEQUENCE SET ...". The
# "dropping ..." lines of --clean come first and are not items of the archive.
RESTORED_ITEM = re.compile(r"^pg_restore: (?:creating|processing data for|executing) ")
WAIT_POLL_S = 0.2  # progress while a tool works on after its last input
TAIL_LINES = 50  # of a live-read stderr, kept for the error message


def exec_argv(target: Target, *args: str, stdin: bool = False) -> list[str]:
    """The command line of a client tool (`args[0]`): the target decides where it runs."""
    return target.pg_argv(*args, stdin=stdin)


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
# Always one row (psql answers each query with a line: an empty table must not hang a read).
REVISION_SQL = "SELECT coalesce((SELECT version_num FROM alembic_version LIMIT 1), '')"


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
    with _stderr_file() as err, private_open(path) as out:
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


class _StderrReader(threading.Thread):
    """A command's stderr read as it comes, in a thread of its own: a pipe nobody drains fills
    up and blocks the tool while we block feeding it. Counts the lines `counted` matches and
    keeps the last ones for the error message."""

    def __init__(self, pipe: IO[bytes], counted: re.Pattern[str]) -> None:
        super().__init__(daemon=True)
        self.pipe, self.counted = pipe, counted
        self.count = 0  # written here only; an int read elsewhere is always whole
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def run(self) -> None:
        for raw in self.pipe:
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.tail.append(line)
            if self.counted.match(line):
                self.count += 1

    def text(self) -> str:
        return "\n".join(self.tail).strip()


def _feed(
    argv: list[str],
    path: Path,
    *,
    progress: Fed | None = None,
    count: re.Pattern[str] | None = None,
    stdout: IO[bytes] | None = None,
) -> None:
    """Stream a file into a command's stdin. `progress` is called after each block and, once
    all is sent, every WAIT_POLL_S until the command ends (it may work on long after its last
    input), always from this thread. With `count`, stderr is read live and its matching lines
    counted; otherwise it goes to a file. A tool that stops reading early (pg_restore -l after
    the table of contents) is fine: its exit code decides."""
    echo(argv)
    with ExitStack() as stack:
        source = stack.enter_context(path.open("rb"))
        err = None if count is not None else stack.enter_context(_stderr_file())
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL if stdout is None else stdout,
            stderr=subprocess.PIPE if err is None else err,
        )
        reader = None
        if count is not None:
            assert proc.stderr is not None
            reader = _StderrReader(proc.stderr, count)
            reader.start()
        sent = 0

        def report() -> None:
            if progress is not None:
                progress(sent, reader.count if reader is not None else 0)

        assert proc.stdin is not None
        try:
            try:
                while block := source.read(CHUNK):
                    proc.stdin.write(block)
                    sent += len(block)
                    report()
                proc.stdin.close()
            except BrokenPipeError:
                pass
            while True:
                try:
                    code = proc.wait(WAIT_POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    report()
        except BaseException:
            proc.kill()  # interrupted, or a progress callback failed: the tool goes too
            proc.wait()
            raise
        if reader is not None:
            reader.join()  # its last lines: the count is final, the error message whole
        report()
        if code:
            if reader is not None:
                raise CommandError(argv, code, reader.text())
            assert err is not None
            raise _failed(argv, code, err)


def check_archive(target: Target, path: Path) -> int:
    """The server's pg_restore can read the archive's table of contents (format, version);
    returns how many entries it has, the items a restore works through."""
    # The listing goes to a file, like errors: a big one would fill a pipe we do not drain.
    with tempfile.TemporaryFile() as listing:
        _feed(exec_argv(target, "pg_restore", "--list", stdin=True), path, stdout=listing)
        listing.seek(0)
        return toc_entries(listing.read().decode(errors="replace"))


def toc_entries(listing: str) -> int:
    """Entries of a `pg_restore --list` listing: its lines but comments (;) and blank ones."""
    return sum(1 for line in map(str.strip, listing.splitlines()) if line and line[0] != ";")


# Where the swap is done from, never a database swapped: template1, which every cluster has
# (the fresh database is made from template0, so a session here is in no one's way).
MAINTENANCE_DB = "template1"
RESTORING_SUFFIX = "_restoring"  # the fresh database a restore fills, beside the live one
REPLACED_SUFFIX = "_replaced"  # the live database once swapped out, dropped right after
TERMINATE_WAIT_MS = 10_000  # pg_terminate_backend waits this long for each session to end


NAME_BYTES = 63  # PostgreSQL cuts longer identifiers: <db>_restoring could become <db> itself


def restoring_name(target: Target) -> str:
    """The database a restore fills; refused (before anything changes) for a live name so long
    that PostgreSQL would cut this one, or `<db>_replaced`, back to a name already in use."""
    longest = max(len(RESTORING_SUFFIX), len(REPLACED_SUFFIX))
    if len(target.db_name.encode()) + longest > NAME_BYTES:
        raise TargetError(
            f"database name {target.db_name!r} is longer than {NAME_BYTES - longest} bytes: a "
            "restore beside it would need a name PostgreSQL cuts short"
        )
    return f"{target.db_name}{RESTORING_SUFFIX}"


def restore(target: Target, path: Path, *, progress: Fed) -> None:
    """The archive into a fresh, empty database beside the live one (`<db>_restoring`),
    then the swap (`swap_in_restored`) is the caller's: nothing of the live database survives,
    not even a table a later migration made. A restoring database left by a killed run is
    dropped first (with any pg_restore still feeding it). All or nothing: one transaction,
    stopping at the first error. No owners or grants from the dump: its roles may not exist on
    this server yet, and the migrate step that follows every restore (coach/dbroles.py) hands
    the objects to the owner role and grants the app role again. `progress` gets the bytes of
    the archive sent and the items (table-of-contents entries) restored so far."""
    fresh = restoring_name(target)
    _admin(
        target,
        f"DROP DATABASE IF EXISTS {_ident(fresh)} WITH (FORCE)",
        # template0: nothing a later change put into template1 comes along either.
        f"CREATE DATABASE {_ident(fresh)} TEMPLATE template0",
    )
    argv = exec_argv(
        target, "pg_restore", "--verbose", "--clean", "--if-exists", "--single-transaction",
        "--exit-on-error", "--no-owner", "--no-privileges", "--no-password",
        "-U", target.db_user, "-d", fresh,
        stdin=True,
    )  # fmt: skip
    _feed(argv, path, progress=progress, count=RESTORED_ITEM)
    # Fresh planner statistics: pg_restore leaves none.
    run(_psql_argv(target, fresh, "ANALYZE"), capture=True, quiet=True)


def swap_in_restored(target: Target) -> None:
    """The restored database takes the live one's name; the live one is dropped. New sessions
    are refused and the open ones (the exporter, a stray psql) ended first: a database in use
    cannot be renamed. Each step is its own statement, so a swap cut short is finished by the
    next restore: with no live database left, the restored one is simply renamed."""
    live, fresh = target.db_name, restoring_name(target)
    old = f"{live}{REPLACED_SUFFIX}"
    named = f"datname = {_literal(live)}"
    exists = f"SELECT 1 FROM pg_database WHERE {named}"  # noqa: S608 - quoted
    steps = [f"DROP DATABASE IF EXISTS {_ident(old)} WITH (FORCE)"]
    if run(_psql_argv(target, MAINTENANCE_DB, exists), capture=True, quiet=True).stdout.strip():
        steps += [
            f"ALTER DATABASE {_ident(live)} WITH ALLOW_CONNECTIONS false",
            f"SELECT count(pg_terminate_backend(pid, {TERMINATE_WAIT_MS})) "  # noqa: S608
            f"FROM pg_stat_activity WHERE {named}",
            f"ALTER DATABASE {_ident(live)} RENAME TO {_ident(old)}",
        ]
    steps += [
        f"ALTER DATABASE {_ident(fresh)} RENAME TO {_ident(live)}",
        f"DROP DATABASE IF EXISTS {_ident(old)} WITH (FORCE)",
    ]
    try:
        _admin(target, *steps)
    except BaseException:
        _undo_swap(target, live, old)
        raise


def _undo_swap(target: Target, live: str, old: str) -> None:
    """A swap cut short (a session that outlived its termination, say): the live database
    back under its name and open to connections again, so the app is not left facing a
    database that refuses everyone. Best effort: the error that stopped the swap is the one
    reported."""

    def exists(name: str) -> bool:
        sql = f"SELECT 1 FROM pg_database WHERE datname = {_literal(name)}"  # noqa: S608
        return bool(
            run(_psql_argv(target, MAINTENANCE_DB, sql), capture=True, quiet=True).stdout.strip()
        )

    try:
        if not exists(live) and exists(old):
            _admin(target, f"ALTER DATABASE {_ident(old)} RENAME TO {_ident(live)}")
        if exists(live):
            _admin(target, f"ALTER DATABASE {_ident(live)} WITH ALLOW_CONNECTIONS true")
    except CommandError as exc:
        say(f"warning: could not undo the cut-short swap ({exc}); check `{live}` by hand")


def drop_restoring(target: Target) -> None:
    """The restoring database of a failed restore (it holds nothing anyone needs)."""
    _admin(target, f"DROP DATABASE IF EXISTS {_ident(restoring_name(target))} WITH (FORCE)")


def _admin(target: Target, *statements: str) -> None:
    """Statements from the maintenance database, each its own (CREATE and DROP DATABASE
    refuse to run in a transaction block, which one -c of several statements would be)."""
    argv = _psql_argv(target, MAINTENANCE_DB)
    for statement in statements:
        argv += ["-c", statement]
    run(argv, capture=True, quiet=True)


def _psql_argv(target: Target, database: str, sql: str | None = None) -> list[str]:
    return exec_argv(
        target, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", target.db_user, "-d",
        database, *(["-c", sql] if sql is not None else []),
    )  # fmt: skip


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    """A database name as an SQL identifier (ours: from the target's settings)."""
    return '"' + name.replace('"', '""') + '"'
