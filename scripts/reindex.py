"""Rebuild the Qdrant vectors from the chunks table, with no search ever seeing a partial index.

The points go into a new collection; the alias the app searches through then switches to it in
one atomic operation and the old collection is dropped. Progress (points done/total) and
throughput (points/s) are printed as it goes. Interrupted (crash, Ctrl-C, deploy), it resumes:
the next run continues into the same new collection from the last batch written. One run at a
time (a PostgreSQL advisory lock). The Celery task coach.reindex does the same inside the stack.

examples:
  ./run python scripts/reindex.py                 # the development compose stack
  ./run python scripts/reindex.py --fresh         # drop an interrupted run, start over
  ./run invoke reindex --prod
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from anywhere

from ops.cli import common as cli
from ops.console import Reporter
from ops.data.reindex import reindex


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--batch", type=int, default=256, help="chunks per batch (default 256)")
    parser.add_argument(
        "--fresh", action="store_true", help="start over instead of resuming an interrupted run"
    )
    cli.add_target(parser)
    cli.add_json(parser)
    args = parser.parse_args(argv)

    def body(reporter: Reporter) -> None:
        result = reindex(
            cli.target_from(args).settings(), batch=args.batch, fresh=args.fresh, reporter=reporter
        )
        reporter.result(
            f"{result.collection}: {result.resumed_from + result.points} points "
            f"({result.points_per_second:.0f} points/s)",
            collection=result.collection,
            previous=result.previous,
            points=result.points,
            resumed_from=result.resumed_from,
            points_per_second=round(result.points_per_second, 1),
        )

    return cli.run(body, json_lines=args.json)


if __name__ == "__main__":
    sys.exit(main())
