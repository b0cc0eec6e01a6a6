"""secrets.*: the files behind the stack's Docker secrets."""

from __future__ import annotations

from invoke import Context, task

from ops.console import table
from ops.paths import ROOT
from ops.stack import secrets as store
from ops.tasks._util import exits_cleanly


@task(
    help={
        "env": "dev or prod (default dev).",
        "force": "Replace existing secrets (rotation: restart the stack afterwards).",
        "llm_api_key": "The LLM provider's API key to store (otherwise an empty file).",
    }
)
@exits_cleanly
def generate(
    c: Context,
    env: str = "dev",
    force: bool = False,
    llm_api_key: str = "",
    alertmanager_webhook_url: str = "",
) -> None:
    """Write random secrets into infra/compose/secrets/<env>/, never overwriting one.

    The directory is gitignored; --force replaces existing secrets (rotation)."""
    written = store.generate(
        env, force=force, llm_api_key=llm_api_key, alertmanager_webhook_url=alertmanager_webhook_url
    )
    print(
        table(
            ["secret", "file", "action"],
            [(w.name, str(w.path.relative_to(ROOT)), w.action) for w in written],
        )
    )
