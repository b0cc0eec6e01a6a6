"""secrets.generate: the files behind the stack's Docker secrets, and Alertmanager's config
rendered from them and the COACH_ALERT_* settings. Values an operator brings (the LLM key, the
alert receivers' URLs and passwords) are read from a file or stdin, never from a command line
(process arguments are visible to every user of the host)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ops.cli.common import ChangeOptions, JsonOption
from ops.cli.spec import Command, opt
from ops.console import Reporter, table
from ops.errors import UsageError
from ops.paths import ROOT
from ops.stack import alerting
from ops.stack import secrets as store
from ops.stack.project import Env, Project


@dataclass(frozen=True)
class GenerateOptions(ChangeOptions, JsonOption):
    prod: bool = opt(False, "the production secrets (default: development)")
    force: bool = opt(
        False, "replace existing secrets (rotation: restart the stack afterwards); asks first"
    )
    secret: list[str] = opt(
        [], "with --force: replace only this secret (repeatable)", metavar="NAME"
    )
    llm_api_key_file: str | None = opt(
        None, "read the LLM provider's API key from this file ('-': stdin)", metavar="FILE"
    )
    alertmanager_webhook_url_file: str | None = opt(
        None, "read Alertmanager's webhook URL from this file ('-': stdin)", metavar="FILE"
    )
    secret_file: list[str] = opt(
        [],
        "read secret NAME from FILE ('-': stdin), e.g. alertmanager_slack_url=slack.txt "
        f"(repeatable; NAME one of {', '.join(store.BROUGHT)})",
        metavar="NAME=FILE",
    )


def _read(source: str | None, what: str) -> str:
    if source is None:
        return ""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} from {source}: {exc.strerror}") from exc
    return text.strip()


def run_generate(options: GenerateOptions, reporter: Reporter) -> None:
    if options.secret and not options.force:
        raise UsageError("--secret names what --force replaces; add --force")
    pairs = [item.partition("=") for item in options.secret_file]
    if bad := [name for name, sep, path in pairs if not sep or not path]:
        raise UsageError(f"--secret-file takes NAME=FILE, not {bad[0]!r}")
    if unknown := sorted({name for name, _, _ in pairs} - set(store.BROUGHT)):
        raise UsageError(
            f"--secret-file: no brought secret {', '.join(unknown)}",
            hint=f"one of {', '.join(store.BROUGHT)}",
        )
    sources = [options.llm_api_key_file, options.alertmanager_webhook_url_file]
    if [*sources, *(path for _, _, path in pairs)].count("-") > 1:
        raise UsageError("only one of the values can come from stdin")
    env: Env = "prod" if options.prod else "dev"
    only = options.secret or None
    llm_api_key = _read(options.llm_api_key_file, "LLM API key")
    webhook = _read(options.alertmanager_webhook_url_file, "webhook URL")
    brought = {name: _read(path, name) for name, _, path in pairs}

    def generate(dry_run: bool) -> list[store.Written]:
        return store.generate(
            env,
            force=options.force,
            only=only,
            dry_run=dry_run,
            llm_api_key=llm_api_key,
            alertmanager_webhook_url=webhook,
            brought=brought,
        )

    plan = generate(dry_run=True)
    replaced = [w.name for w in plan if w.action == "would replace"]
    if replaced and not options.dry_run:
        question = f"Replace {len(replaced)} {env} secret(s): {', '.join(replaced)}?"
        options.confirm(
            f"{question} Services keep the old values until restarted; PostgreSQL keeps the "
            "password its volume was made with."
        )
    written = plan if options.dry_run else generate(dry_run=False)
    # What a plain `docker compose up` mounts as alertmanager_config (`invoke up` renders too).
    directory = store.directory(env)
    if directory.is_dir():
        written.append(alerting.write(Project(env), directory=directory, dry_run=options.dry_run))
    rows = [(w.name, str(w.path.relative_to(ROOT)), w.action) for w in written]
    reporter.result(
        table(["secret", "file", "action"], rows),
        secrets=[{"name": n, "file": f, "action": a} for n, f, a in rows],
    )


GENERATE = Command(
    "secrets.generate",
    GenerateOptions,
    run_generate,
    """Write random secrets into infra/compose/secrets/<dev|prod>/, never overwriting one.

The directory is gitignored. --force replaces existing secrets (all, or those named with
--secret): it asks first unless --yes, and --dry-run says what it would replace.

examples:
  ./run invoke secrets.generate --prod
  ./run invoke secrets.generate --prod --llm-api-key-file - < key.txt
  ./run invoke secrets.generate --prod --force --secret redis_password --yes
""",
)

COMMANDS = (GENERATE,)
