"""`python -m coach <command>`: the operational entry points baked into the image."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from coach.settings import Settings, get_settings

T = TypeVar("T")

KEYS_HELP = """\
API keys. Every /api/v1 call needs one, sent as `Authorization: Bearer KEY` or `X-API-Key: KEY`.
A key belongs to one tenant and sees only that tenant's snippets. Scopes: read (list, read,
content, task state), write (read + upload and ask), admin (write + operator calls).
Only the key's sha256 is stored: `create` shows the key once, keep it then.
Output is JSON on stdout (one object; `list`: one per line); log lines go to stderr.
"""


def _parser() -> argparse.ArgumentParser:
    from coach.apikeys import TENANT_PATTERN, Scope  # noqa: PLC0415 - sqlalchemy only here

    parser = argparse.ArgumentParser(prog="python -m coach", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "migrate",
        help="upgrade the database schema to head (advisory-locked); with "
        "API_KEY_BOOTSTRAP_FILE set, also register that key",
    )
    sub.add_parser("settings", help="print the effective settings as JSON, secrets masked")
    keys = sub.add_parser(
        "keys",
        help="create, list and revoke API keys",
        description=KEYS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create",
        help="make a key; prints {id, prefix, tenant, scopes, name, key} once",
        description="Make a key. The JSON printed is the only place the key ever appears.",
    )
    create.add_argument(
        "--tenant", required=True, help=f"whose snippets the key sees ({TENANT_PATTERN})"
    )
    create.add_argument(
        "--scope",
        required=True,
        choices=[s.value for s in Scope],
        help="read; write (implies read); admin (implies write)",
    )
    create.add_argument("--name", help="what the key is for, 1-100 characters (default: tenant)")
    listing = actions.add_parser(
        "list", help="one JSON line per key: never the key nor its hash, revoked ones included"
    )
    listing.add_argument("--tenant", help="only this tenant's keys")
    revoke = actions.add_parser(
        "revoke", help="revoke a key at once (its next request gets 401); prints the key's entry"
    )
    revoke.add_argument("key", metavar="ID_OR_PREFIX", help="the key's id or prefix (`keys list`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    if args.command == "settings":
        print(json.dumps(settings.masked(), indent=2, default=str))
        return 0
    from coach.log import configure  # noqa: PLC0415 - only these commands log

    configure(settings)  # alembic's lines and ours as JSON, like every service's
    if args.command == "keys":
        return _keys(settings, args)
    return _migrate(settings)


def _migrate(settings: Settings) -> int:
    from coach.apikeys import bootstrap  # noqa: PLC0415
    from coach.errors import CoachError  # noqa: PLC0415
    from coach.migrate import migrate, wait_for_database  # noqa: PLC0415 - alembic only here

    log = structlog.get_logger("coach.migrate")
    asyncio.run(wait_for_database(settings, schema=False, timeout_s=settings.startup_wait))
    before, after = asyncio.run(migrate(settings))
    log.info(f"database schema: {before or 'empty'} -> {after}", before=before, after=after)
    try:
        _with_sessions(settings, lambda sessions: bootstrap(settings, sessions))
    except CoachError as exc:  # an unreadable or malformed key file
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    out = sys.stdout
    # Log lines (the audit trail of who made which key) to stderr: stdout is the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        from coach import apikeys  # noqa: PLC0415
        from coach.errors import CoachError  # noqa: PLC0415
        from coach.migrate import current_revision, head_revision  # noqa: PLC0415

        revision = asyncio.run(current_revision(settings))
        if revision != head_revision():
            print(
                f"error: database schema is at {revision or 'nothing'}, this code needs "
                f"{head_revision()}: run `python -m coach migrate` first",
                file=sys.stderr,
            )
            return 1
        try:
            if args.action == "create":
                info, key = _with_sessions(
                    settings,
                    lambda s: apikeys.create(
                        s, tenant=args.tenant, scopes=[args.scope], name=args.name
                    ),
                )
                entry = info.to_dict()
                lines = [{k: entry[k] for k in ("id", "prefix", "tenant", "scopes", "name")}]
                lines[0]["key"] = key
            elif args.action == "list":
                found = _with_sessions(settings, lambda s: apikeys.list_keys(s, tenant=args.tenant))
                lines = [info.to_dict() for info in found]
            else:
                lines = [_with_sessions(settings, lambda s: apikeys.revoke(s, args.key)).to_dict()]
        except CoachError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
    for line in lines:
        print(json.dumps(line), file=out)
    return 0


def _with_sessions(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(sessionmaker)` on an engine of its own, disposed afterwards."""
    from coach.db import make_engine, sessionmaker  # noqa: PLC0415

    async def run() -> T:
        engine = make_engine(settings, pooled=False)
        try:
            return await work(sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
