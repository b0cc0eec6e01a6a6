"""Restore a backup made by scripts/backup.py: database, objects and vectors.

Before touching anything it checks every file against the manifest's sha256 (one changed byte:
refused, naming the file), that this code knows the backup's schema revision, and that the
server's pg_restore reads the dump. It asks for --yes (or a typed confirmation on a terminal),
takes a safety backup of the current state, stops the writers (backend, worker, beat) and
always starts them again. PostgreSQL is restored in one transaction (pg_restore --clean
--if-exists --single-transaction --exit-on-error), then ANALYZE; the object store ends up with
exactly the backup's objects; migrations run when the backup's schema is older; vectors come
from the Qdrant snapshot, or are rebuilt from the chunks table. It ends with a verification
table (rows, objects, checksums, vectors); exit status 0 only when every check passes.

examples:
  ./run python scripts/restore.py backups/20250101T030000Z --yes
  ./run python scripts/restore.py 20250101T030000Z --prod          # asks on a terminal
  ./run invoke restore --backup 20250101T030000Z --yes
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from anywhere

from ops.cli import common as cli
from ops.console import Reporter
from ops.data.backup import DEFAULT_ROOT
from ops.data.restore import restore


def confirm_on_terminal(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"{question}\nType 'restore' to go ahead: ")
    return answer.strip() == "restore"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument(
        "backup", help="a backup directory, or its name under --backups-dir (e.g. 20250101T030000Z)"
    )
    parser.add_argument("--yes", action="store_true", help="restore without asking")
    parser.add_argument(
        "--backups-dir",
        type=Path,
        default=DEFAULT_ROOT,
        help="where backups and the safety backup live (default ./backups)",
    )
    parser.add_argument(
        "--no-safety-backup",
        action="store_true",
        help="skip the backup of the current state (when the current database cannot be dumped)",
    )
    cli.add_target(parser, writers=True)
    cli.add_json(parser)
    args = parser.parse_args(argv)
    directory = Path(args.backup)
    if not directory.is_dir() and (args.backups_dir / args.backup).is_dir():
        directory = args.backups_dir / args.backup

    def body(reporter: Reporter) -> None:
        restore(
            cli.target_from(args),
            directory,
            yes=args.yes,
            confirm=confirm_on_terminal,
            safety_backup=not args.no_safety_backup,
            backups_root=args.backups_dir,
            reporter=reporter,
        )

    return cli.run(body, json_lines=args.json)


if __name__ == "__main__":
    sys.exit(main())
