"""keys.create, keys.list, keys.revoke: the API keys of a running stack (development or
production). The app's own command makes them inside the stack's backend container
(ops/stack/keys.py); a key is shown once, on stdout or in a file of mode 0600, and never again."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ops.cli.common import ChangeOptions, JsonOption, StackOptions
from ops.cli.spec import Command, opt
from ops.console import Reporter, say, table
from ops.errors import UsageError
from ops.stack import keys

LIST_HEADERS = ["id", "prefix", "tenant", "scopes", "name", "created", "revoked"]


@dataclass(frozen=True)
class CreateOptions(StackOptions, JsonOption):
    tenant: str | None = opt(
        None,
        "the tenant whose snippets and questions the key reaches (a-z, 0-9, '.', '_', '-')",
        metavar="NAME",
        required=True,
    )
    scope: str | None = opt(
        None,
        "read (list and read snippets), write (read, upload, ask) or admin (write, operators)",
        metavar="SCOPE",
        required=True,
    )
    name: str | None = opt(
        None, "what or who holds the key, e.g. ci or alice (default: the tenant)", metavar="NAME"
    )
    out: Path | None = opt(
        None, "write the key to this new file (mode 0600) and print only its path", metavar="FILE"
    )


def _reserve(path: Path) -> int:
    """The file the key goes to, made empty and 0600 before the key exists: a path that cannot
    be written fails here, with no key made that nobody holds."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; nothing created", hint="name a new file") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}; nothing created") from exc


def run_create(options: CreateOptions, reporter: Reporter) -> None:
    assert options.tenant is not None and options.scope is not None  # required flags
    runner = keys.in_project(options.stack())
    fd = _reserve(options.out) if options.out else None
    try:
        made = keys.create(runner, tenant=options.tenant, scope=options.scope, name=options.name)
    except BaseException:
        if fd is not None and options.out:
            os.close(fd)
            options.out.unlink(missing_ok=True)
        raise
    if fd is not None and options.out:
        with os.fdopen(fd, "w") as out:
            out.write(made.secret + "\n")
        say(f"created API key {made.key.describe()}, written to {options.out} (mode 0600)")
        reporter.result(str(options.out), **made.key.to_dict(), file=str(options.out))
        return
    say(
        f"created API key {made.key.describe()}. It is shown this once and stored nowhere "
        "(the app keeps only its hash): keep it now."
    )
    reporter.result(made.secret, **made.key.to_dict(), key=made.secret)


CREATE = Command(
    "keys.create",
    CreateOptions,
    run_create,
    """Make an API key for a tenant on the running stack; prints the key once.

The key alone goes to stdout (or, with --out, into a new file of mode 0600, and only its path
is printed); it is not shown again: the app stores its sha256 only. Clients send it as
`Authorization: Bearer KEY`. Scopes: read < write < admin, each including the ones before.

examples:
  ./run invoke keys.create --prod --tenant acme --scope write --name ci --out ci.key
  ./run invoke keys.create --tenant dev --scope read --name dashboard
""",
)


@dataclass(frozen=True)
class ListOptions(StackOptions, JsonOption):
    tenant: str | None = opt(None, "only this tenant's keys", metavar="NAME")


def run_list(options: ListOptions, reporter: Reporter) -> None:
    found = keys.list_keys(keys.in_project(options.stack()), tenant=options.tenant)
    rows = [
        (k.id, k.prefix, k.tenant, ",".join(k.scopes), k.name, k.created_at or "-",
         k.revoked_at or "-")
        for k in found
    ]  # fmt: skip
    reporter.result(
        table(LIST_HEADERS, rows) if rows else "no API keys", keys=[k.to_dict() for k in found]
    )


LIST = Command(
    "keys.list",
    ListOptions,
    run_list,
    """List the running stack's API keys, revoked ones included; never a key or its hash.""",
)


@dataclass(frozen=True)
class RevokeOptions(StackOptions, ChangeOptions, JsonOption):
    key: str | None = opt(
        None, "the key's id or prefix, as keys.list shows them", metavar="ID_OR_PREFIX",
        positional=True,
    )  # fmt: skip


def run_revoke(options: RevokeOptions, reporter: Reporter) -> None:
    assert options.key is not None  # positional, required
    runner = keys.in_project(options.stack())
    key = keys.find(keys.list_keys(runner), options.key)
    if not key.active:
        reporter.result(
            f"API key {key.describe()} was revoked at {key.revoked_at}; nothing changed",
            **key.to_dict(),
            changed=False,
        )
        return
    if options.dry_run:
        reporter.result(f"dry run: would revoke API key {key.describe()}", **key.to_dict(),
                        dry_run=True)  # fmt: skip
        return
    options.confirm(f"Revoke API key {key.describe()}? Its next request gets 401.")
    revoked = keys.revoke(runner, key)
    reporter.result(f"revoked API key {revoked.describe()}", **revoked.to_dict(), changed=True)


REVOKE = Command(
    "keys.revoke",
    RevokeOptions,
    run_revoke,
    """Revoke an API key of the running stack at once: its next request gets 401.

Asks first unless --yes; --dry-run names the key and changes nothing. Revoking a revoked key
changes nothing.

examples:
  ./run invoke keys.revoke coach_Ab3dE9xY --prod --yes
""",
)

COMMANDS = (CREATE, LIST, REVOKE)
