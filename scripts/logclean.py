"""Delete rotated application log files: by age, then by a cap on the total size.

Rotated files are LOG_FILE's siblings named after it: app.log.1, app.log.2 ... (size rotation),
app.log.2025-01-31 (daily rotation), app.log-20250131 (logrotate), each possibly .gz. First
those older than --older-than-days go; then, while the live file and the rotated ones left add
up to more than --max-total-mb, the oldest rotated one. The live file is never deleted.
--dry-run deletes nothing and prints what it would free. The beat job coach.clean_logs runs
the same cleanup inside the stack.

examples:
  ./run python scripts/logclean.py --dry-run                  # LOG_FILE from the environment
  ./run python scripts/logclean.py --log-file /var/log/coach/backend.log --older-than-days 7
  ./run invoke logs-clean --dry-run
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from anywhere

from coach import logfiles
from coach.settings import get_settings
from ops.cli import common as cli
from ops.console import Reporter
from ops.data.logclean import clean
from ops.errors import OpsError


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--log-file",
        type=Path,
        action="append",
        help="the live log file (repeatable; default: LOG_FILE from the environment)",
    )
    parser.add_argument(
        "--older-than-days",
        type=float,
        default=logfiles.DEFAULT_OLDER_THAN_DAYS,
        help="delete rotated files older than this (default %(default)g)",
    )
    parser.add_argument(
        "--max-total-mb",
        type=float,
        default=logfiles.DEFAULT_MAX_TOTAL_BYTES / 1e6,
        help="then keep live + rotated files within this many MB, oldest deleted first "
        "(default %(default)g)",
    )
    parser.add_argument("--dry-run", action="store_true", help="delete nothing; say what would go")
    cli.add_json(parser)
    args = parser.parse_args(argv)

    def body(reporter: Reporter) -> None:
        live_files = args.log_file or [get_settings().log_file]
        if None in live_files:
            raise OpsError("no log file: LOG_FILE is not set; pass --log-file")
        clean(
            live_files,
            older_than_days=args.older_than_days,
            max_total_bytes=int(args.max_total_mb * 1e6),
            dry_run=args.dry_run,
            reporter=reporter,
        )

    return cli.run(body, json_lines=args.json)


if __name__ == "__main__":
    sys.exit(main())
