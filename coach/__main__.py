"""`python -m coach <command>`: the operational entry points baked into the image."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import structlog

from coach.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coach", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="upgrade the database schema to head (advisory-locked)")
    sub.add_parser("settings", help="print the effective settings as JSON, secrets masked")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    if args.command == "settings":
        print(json.dumps(settings.masked(), indent=2, default=str))
        return 0
    from coach.log import configure  # noqa: PLC0415 - only this command logs
    from coach.migrate import migrate, wait_for_database  # noqa: PLC0415 - alembic only here

    configure(settings)  # alembic's lines and ours as JSON, like every service's
    asyncio.run(wait_for_database(settings, schema=False, timeout_s=settings.startup_wait))
    before, after = asyncio.run(migrate(settings))
    structlog.get_logger("coach.migrate").info(
        f"database schema: {before or 'empty'} -> {after}", before=before, after=after
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
