"""Back up the Code Learning Coach into one timestamped directory.

It holds PostgreSQL (pg_dump -Fc, run inside the postgres container with the server's own
client), every object of the object store (objects/<key>), a Qdrant snapshot where a Qdrant
server runs (local mode: none; a restore rebuilds the vectors) and manifest.json: app version,
schema revision, row counts, tool versions, and the sha256 and size of every file.

The directory is written as <name>.partial and renamed only when complete: a directory without
that suffix is always a whole backup. Exit status 0 when complete, 1 otherwise.

examples:
  ./run python scripts/backup.py                          # the development compose stack
  ./run python scripts/backup.py --keep 7 --keep-days 30  # then apply retention
  ./run python scripts/backup.py --prod --upload-to s3://coach-backups/nightly
  ./run python scripts/backup.py --list                   # the backups there are
  ./run invoke backup --keep 7                            # the same through Invoke
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from anywhere

from ops.cli import common as cli
from ops.console import Reporter, human_size, table
from ops.data.backup import DEFAULT_ROOT, backup, complete_backups
from ops.data.manifest import MANIFEST, Manifest


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--dest", type=Path, default=DEFAULT_ROOT, help="backups directory (default ./backups)"
    )
    parser.add_argument("--keep", type=int, metavar="N", help="retention: keep the N newest")
    parser.add_argument(
        "--keep-days",
        type=float,
        metavar="DAYS",
        help="retention: keep those newer than DAYS (with --keep: a backup goes when neither "
        "rule keeps it)",
    )
    parser.add_argument(
        "--upload-to",
        metavar="s3://BUCKET/PREFIX",
        help="also copy the backup there, with the app's S3 endpoint and credentials",
    )
    parser.add_argument("--list", action="store_true", help="list the backups and exit")
    cli.add_target(parser)
    cli.add_json(parser)
    args = parser.parse_args(argv)

    def listing(reporter: Reporter) -> None:
        rows, found = [], []
        for path in complete_backups(args.dest):
            manifest = Manifest.loads((path / MANIFEST).read_text())
            size = sum(f.size for f in manifest.files.values())
            counts = ", ".join(f"{n} {t}" for t, n in manifest.tables.items())
            rows.append((path.name, human_size(size), manifest.alembic_revision, counts))
            found.append({"name": path.name, "path": str(path), "bytes": size, **manifest.tables})
        reporter.result(table(["backup", "size", "revision", "rows"], rows), backups=found)

    def run_backup(reporter: Reporter) -> None:
        result = backup(
            cli.target_from(args),
            args.dest,
            keep=args.keep,
            keep_days=args.keep_days,
            upload_to=args.upload_to,
            reporter=reporter,
        )
        manifest = result.manifest
        rows = [
            ("directory", result.path),
            (
                "size",
                f"{human_size(result.size)} in {result.seconds:.1f}s ({result.mb_per_s:.1f} MB/s)",
            ),
            ("schema revision", manifest.alembic_revision),
            ("rows", ", ".join(f"{n} {t}" for t, n in manifest.tables.items())),
            ("objects", manifest.objects["count"]),
            ("vectors", manifest.vectors.get("snapshot") or manifest.vectors.get("note")),
            ("uploaded to", result.uploaded or "-"),
            ("removed by retention", ", ".join(p.name for p in result.removed) or "-"),
        ]
        reporter.result(
            table(["backup", ""], rows),
            path=str(result.path),
            bytes=result.size,
            seconds=round(result.seconds, 3),
            tables=manifest.tables,
            objects=manifest.objects["count"],
            alembic_revision=manifest.alembic_revision,
            uploaded=result.uploaded,
            removed=[str(p) for p in result.removed],
        )

    return cli.run(listing if args.list else run_backup, json_lines=args.json)


if __name__ == "__main__":
    sys.exit(main())
