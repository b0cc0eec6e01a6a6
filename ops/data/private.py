"""Files only the operator may read: a backup holds every snippet and question, so whatever
the tooling writes under a backups directory (each backup, its manifest, the lock, temporary
files, fetched off-site copies) is made 0700 (directories) and 0600 (files) when it is created,
whatever the umask — never loosened first and tightened once the data is in."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import cast

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, *, parents: bool = False, exist_ok: bool = False) -> Path:
    """mkdir with mode 0700. `parents`: missing ancestors too, each 0700 (existing ones are
    left as they are). An existing `path` (with `exist_ok`) is left as it is: it may be a mount
    point or a directory another account reads (an off-site sync); what goes in is private."""
    if parents and not path.parent.exists():
        private_dir(path.parent, parents=True, exist_ok=True)
    try:
        path.mkdir(DIR_MODE)
    except FileExistsError:
        if not exist_ok or not path.is_dir():
            raise
        return path
    # The umask can only take bits away from 0700; chmod makes it exactly 0700 while the
    # directory is still empty.
    path.chmod(DIR_MODE)
    return path


def private_open(path: Path, mode: str = "wb") -> io.BufferedWriter:
    """Open `path` for writing ("wb": truncated, "ab": appended) as a 0600 file. The mode is
    set on the descriptor before a byte is written; a file that existed with a looser mode is
    tightened first."""
    if mode not in ("wb", "ab"):
        raise ValueError(f"private_open writes binary files ('wb' or 'ab'), not {mode!r}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    flags |= os.O_APPEND if mode == "ab" else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return cast(io.BufferedWriter, os.fdopen(fd, mode))
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, data: bytes) -> None:
    with private_open(path) as out:
        out.write(data)
