"""API keys for the suites that reach a stack over HTTP: every client sends one, as a user's
would. The development stack's own key comes from its secrets directory; any other key is made
through the operators' path (ops/stack/keys.py), in whatever runs the app's key command."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import httpx

from ops.stack import keys
from ops.stack.project import Project


class HasKeys(Protocol):
    """A running stack that can run `python -m coach keys ...` against its database."""

    def key_runner(self) -> keys.Runner: ...


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def client(base_url: str, key: str | None, timeout: float) -> httpx.Client:
    """An HTTP client sending `key` (None: no key, for the tests of what that gets)."""
    return httpx.Client(base_url=base_url, timeout=timeout, headers=headers(key) if key else {})


def read_key(path: Path) -> str:
    key = path.read_text().strip()
    assert key.startswith("coach_"), f"{path} holds no API key"
    return key


def dev_key(project: Project) -> str:
    """The development stack's key, as `invoke up` made it (tenant dev, scope write)."""
    path = keys.dev_key_file(project)
    assert path is not None, f"{project.name}: production has no dev key; make one with make_key"
    return read_key(path)


def make_key(stack: HasKeys, tenant: str, scope: str, name: str | None = None) -> str:
    """A new key of `tenant` with `scope` on the running stack, made as `invoke keys.create`
    makes it; returns the key itself."""
    return create(stack, tenant, scope, name).secret


def create(stack: HasKeys, tenant: str, scope: str, name: str | None = None) -> keys.Created:
    """make_key, with the key's id and prefix (to revoke it, say)."""
    return keys.create(stack.key_runner(), tenant=tenant, scope=scope, name=name)


def revoke(stack: HasKeys, id_or_prefix: str) -> keys.Key:
    runner = stack.key_runner()
    return keys.revoke(runner, keys.find(keys.list_keys(runner), id_or_prefix))
