"""API keys of a running stack: what `invoke keys.*` does, callable by tests.

Keys are made, listed and revoked by the app's own command (`python -m coach keys ...`) in a
container of the stack, which has the database's settings and secrets: the key is generated and
hashed there, and reaches us only on that command's stdout, never as an argument, a variable or
a log line. Its output is JSON (one object per line); its refusals are an `error:` line on
stderr among its JSON log lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coach.apikeys import Scope, validate_name, validate_tenant
from ops.errors import OpsError, StackError
from ops.proc import run
from ops.stack import roles, secrets
from ops.stack.project import Project

KEYS = ("python", "-m", "coach", "keys")
# Runs `python -m coach keys <args>` somewhere; (exit status, stdout, stderr).
Runner = Callable[[Sequence[str]], tuple[int, str, str]]


class NoStack(StackError):
    """No running container to run the app's key command in."""


class KeyRefused(OpsError):
    """The app refused the key command (an unknown key, a bad tenant, an old schema...)."""


@dataclass(frozen=True)
class Key:
    """A key as listings show it: never the key itself nor its hash."""

    id: str
    prefix: str
    tenant: str
    scopes: tuple[str, ...]
    name: str
    created_at: str | None = None
    revoked_at: str | None = None

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Key:
        return cls(
            str(entry["id"]),
            str(entry["prefix"]),
            str(entry["tenant"]),
            tuple(str(s) for s in entry.get("scopes") or ()),
            str(entry.get("name") or ""),
            entry.get("created_at"),
            entry.get("revoked_at"),
        )

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def describe(self) -> str:
        return f"{self.prefix} (tenant {self.tenant}, {','.join(self.scopes)}, name {self.name})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prefix": self.prefix,
            "tenant": self.tenant,
            "scopes": list(self.scopes),
            "name": self.name,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True)
class Created:
    key: Key
    secret: str  # the plaintext key: shown once, stored nowhere by us


def dev_key_file(project: Project) -> Path | None:
    """The development stack's own key (made with its secrets); production has none."""
    if project.env != "dev":
        return None
    return Path(project.environ()["SECRETS_DIR"]) / secrets.DEV_API_KEY


def in_project(project: Project) -> Runner:
    """The command in the project's running app service whose settings the tooling uses (the
    backend, coach.settings=true: it has the database's), by `docker compose exec`."""

    def runner(args: Sequence[str]) -> tuple[int, str, str]:
        service = roles.settings_service(project.config())
        running = [
            row
            for row in project.ps()
            if row.get("Service") == service and row.get("State") == "running"
        ]
        if not running:
            raise NoStack(
                f"no running {service} in compose project {project.name}",
                hint="start the stack with `invoke up` (plus --prod or --project NAME as "
                "it was started)",
            )
        done = project.run(
            "exec", "-T", service, *KEYS, *args, capture=True, check=False, quiet=True
        )
        return done.returncode, done.stdout, done.stderr

    return runner


def in_container(container: str) -> Runner:
    """The command in one container by id or name (a Swarm task's, where compose has none)."""

    def runner(args: Sequence[str]) -> tuple[int, str, str]:
        argv = ["docker", "exec", container, *KEYS, *args]
        done = run(argv, capture=True, check=False, quiet=True)
        return done.returncode, done.stdout, done.stderr

    return runner


def refusal(stderr: str) -> str:
    """The app's own `error:` line among its stderr (JSON log lines, argparse's usage)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line.partition("error: ")[2] for line in lines if "error: " in line]
    return said[-1] if said else (lines[-1] if lines else "no output")


def entries(stdout: str) -> list[dict[str, Any]]:
    """The command's JSON lines (anything else on stdout is not ours to trust)."""
    found: list[dict[str, Any]] = []
    for raw in stdout.splitlines():
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "id" in value:
            found.append(value)
    return found


def _call(runner: Runner, *args: str) -> list[dict[str, Any]]:
    code, stdout, stderr = runner(args)
    if code != 0:
        raise KeyRefused(f"keys {args[0]}: {refusal(stderr)}")
    return entries(stdout)


def _one(found: list[dict[str, Any]], action: str) -> dict[str, Any]:
    if len(found) != 1:
        raise KeyRefused(f"keys {action} printed {len(found)} entries, not one")
    return found[0]


def create(runner: Runner, *, tenant: str, scope: str, name: str | None = None) -> Created:
    """A new key; checked here first with the app's own rules, so a bad value runs nothing."""
    validate_tenant(tenant)
    if scope not in {s.value for s in Scope}:
        raise OpsError(
            f"unknown scope {scope!r}", hint=f"one of {', '.join(s.value for s in Scope)}"
        )
    if name is not None:
        validate_name(name)
    args = ["create", "--tenant", tenant, "--scope", scope, *(["--name", name] if name else [])]
    made = _one(_call(runner, *args), "create")
    if not str(made.get("key", "")).startswith("coach_"):
        raise KeyRefused("keys create printed no key: is the app image older than this checkout?")
    return Created(Key.of(made), str(made["key"]))


def list_keys(runner: Runner, *, tenant: str | None = None) -> list[Key]:
    if tenant is not None:
        validate_tenant(tenant)
    return [Key.of(e) for e in _call(runner, "list", *(["--tenant", tenant] if tenant else []))]


def find(keys: Sequence[Key], id_or_prefix: str) -> Key:
    """The one key with this id or prefix, as the app matches it (`keys revoke`)."""
    wanted = id_or_prefix.strip()
    matches = [k for k in keys if wanted in (k.id, k.prefix)]
    if not matches:
        raise KeyRefused(
            f"no API key with id or prefix {wanted!r}", hint="`invoke keys.list` shows them"
        )
    if len(matches) > 1:
        raise KeyRefused(f"prefix {wanted!r} names {len(matches)} keys", hint="give the id")
    return matches[0]


def revoke(runner: Runner, key: Key) -> Key:
    """Revoke by id (unambiguous); the key's next request gets 401."""
    return Key.of(_one(_call(runner, "revoke", key.id), "revoke"))
