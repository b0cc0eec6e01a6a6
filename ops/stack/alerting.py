"""Alertmanager's running config, rendered from its committed base and the COACH_ALERT_*
settings into the secrets directory (the compose secret alertmanager_config).

Alertmanager expands no environment variables in its config and the official image has no
shell to do it, so the settings that differ per deployment (which receivers, SMTP host and
addresses, Slack channel, WeCom ids) are written into the file here. Credentials stay secret
files Alertmanager reads at send time, except WeCom's: Alertmanager 0.28 has no wechat
api_secret_file, so it is copied into the rendered file, which is why that file is a secret.
Settings come from the environment and the project's overrides, over .env.prod in production,
as compose reads its variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from ops.errors import ConfigError
from ops.paths import INFRA
from ops.stack.doctor import dotenv
from ops.stack.project import Project
from ops.stack.secrets import Written

PREFIX = "COACH_ALERT_"
BASE = INFRA / "observability/alertmanager/alertmanager.yml"
CONFIG_FILE = "alertmanager.yml"  # in the secrets directory
CONFIG_SECRET = "alertmanager_config"  # noqa: S105 - its compose secret's name
RECEIVER = "coach"  # the base's one receiver, every route's
SECRETS = "/run/secrets"
# Names of the receivers' secret files (ops/stack/secrets.py creates them empty).
WEBHOOK_URL = "alertmanager_webhook_url"
SLACK_URL = "alertmanager_slack_url"
SMTP_PASSWORD = "alertmanager_smtp_password"  # noqa: S105 - a file name
WECHAT_SECRET = "alertmanager_wechat_secret"  # noqa: S105 - a file name

Receiver = Literal["email", "slack", "wechat", "webhook"]


def _names(value: object) -> object:
    """'email, slack' -> ('email', 'slack'): the comma list an environment variable holds."""
    if isinstance(value, str):
        return tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    return value


class AlertSettings(BaseModel):
    """Where alerts go. Each field is COACH_ALERT_<NAME>; an unknown COACH_ALERT_ name is an
    error (a typo would otherwise switch a receiver off in silence)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    receivers: Annotated[tuple[Receiver, ...], BeforeValidator(_names)] = ("webhook",)
    smtp_smarthost: str = ""  # host:port; 465 is implicit TLS, otherwise STARTTLS
    smtp_from: str = ""
    smtp_username: str = ""  # empty: no SMTP AUTH (the password is the secret file)
    smtp_require_tls: bool = True
    email_to: str = ""  # comma-separated addresses
    slack_channel: str = ""  # empty: the incoming webhook's own channel
    wechat_corp_id: str = ""
    wechat_agent_id: str = ""
    wechat_to_party: str = ""
    wechat_to_user: str = ""
    wechat_to_tag: str = ""
    wechat_api_url: str = ""  # empty: Alertmanager's https://qyapi.weixin.qq.com/cgi-bin/

    @model_validator(mode="after")
    def _complete(self) -> AlertSettings:
        required: dict[Receiver, tuple[str, ...]] = {
            "email": ("smtp_smarthost", "smtp_from", "email_to"),
            "wechat": ("wechat_corp_id", "wechat_agent_id"),
        }
        for receiver in self.receivers:
            missing = [f for f in required.get(receiver, ()) if not getattr(self, f)]
            if missing:
                names = ", ".join(PREFIX + f.upper() for f in missing)
                raise ValueError(f"receiver {receiver} is on but {names} unset")
        targets = (self.wechat_to_party, self.wechat_to_user, self.wechat_to_tag)
        if "wechat" in self.receivers and not any(targets):
            raise ValueError(
                f"receiver wechat is on but none of {PREFIX}WECHAT_TO_PARTY, _TO_USER, _TO_TAG set"
            )
        return self


def settings(environ: Mapping[str, str]) -> AlertSettings:
    values = {k.removeprefix(PREFIX).lower(): v for k, v in environ.items() if k.startswith(PREFIX)}
    try:
        return AlertSettings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = PREFIX + str(first["loc"][0]).upper() if first["loc"] else ""
        if first["type"] == "extra_forbidden":
            known = ", ".join(PREFIX + name.upper() for name in AlertSettings.model_fields)
            raise ConfigError(f"{where}: no such setting", hint=f"known: {known}") from exc
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(
            f"{where}: {message}" if where else message,
            hint="docs/operations.md, section 'Where alerts go'",
        ) from exc


def readers(config: Mapping[str, Any]) -> list[str]:
    """The services of a compose model that mount the rendered config (Alertmanager)."""
    return sorted(
        name
        for name, spec in config.get("services", {}).items()
        if any(s.get("source") == CONFIG_SECRET for s in spec.get("secrets") or [])
    )


def environment(project: Project) -> dict[str, str]:
    """The variables as compose sees them: the shell and the overrides win over .env.prod."""
    environ = project.environ()
    if project.env == "prod":
        return dotenv(project.prod_env_file()) | environ
    return environ


def _integrations(alerting: AlertSettings, secrets_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The coach receiver's *_configs: every text from templates/coach.tmpl."""
    out: dict[str, list[dict[str, Any]]] = {}
    if "email" in alerting.receivers:
        email: dict[str, Any] = {
            "to": alerting.email_to,
            "from": alerting.smtp_from,
            "smarthost": alerting.smtp_smarthost,
            "require_tls": alerting.smtp_require_tls,
        }
        if alerting.smtp_username:
            email |= {
                "auth_username": alerting.smtp_username,
                "auth_password_file": f"{SECRETS}/{SMTP_PASSWORD}",
            }
        out["email_configs"] = [
            email
            | {
                "send_resolved": True,
                "headers": {"Subject": '{{ template "coach.title" . }}'},
                "html": '{{ template "coach.email.html" . }}',
                "text": '{{ template "coach.text" . }}',
            }
        ]
    if "slack" in alerting.receivers:
        slack: dict[str, Any] = {"api_url_file": f"{SECRETS}/{SLACK_URL}", "send_resolved": True}
        if alerting.slack_channel:
            slack["channel"] = alerting.slack_channel
        out["slack_configs"] = [
            slack
            | {
                "title": '{{ template "coach.title" . }}',
                "title_link": '{{ template "coach.runbook" . }}',
                "text": '{{ template "coach.text" . }}',
            }
        ]
    if "wechat" in alerting.receivers:
        secret_file = secrets_dir / WECHAT_SECRET
        secret = secret_file.read_text().strip() if secret_file.is_file() else ""
        if not secret:
            raise ConfigError(
                f"receiver wechat is on but {secret_file} is empty",
                hint=f"`invoke secrets.generate --force --secret {WECHAT_SECRET} "
                f"--secret-file {WECHAT_SECRET}=FILE` (add --prod for production)",
            )
        wechat: dict[str, Any] = {
            "api_secret": secret,  # inline: no api_secret_file before Alertmanager 0.31
            "corp_id": alerting.wechat_corp_id,
            "agent_id": alerting.wechat_agent_id,
            "send_resolved": True,
            "message": '{{ template "coach.wechat.message" . }}',
        }
        if alerting.wechat_api_url:
            wechat["api_url"] = alerting.wechat_api_url
        targets = {
            "to_party": alerting.wechat_to_party,
            "to_user": alerting.wechat_to_user,
            "to_tag": alerting.wechat_to_tag,
        }
        out["wechat_configs"] = [wechat | {k: v for k, v in targets.items() if v}]
    if "webhook" in alerting.receivers:
        out["webhook_configs"] = [{"url_file": f"{SECRETS}/{WEBHOOK_URL}", "send_resolved": True}]
    return out


def render(alerting: AlertSettings, secrets_dir: Path, base: Path = BASE) -> str:
    """The base with its one receiver's integrations replaced by the receivers turned on."""
    config: dict[str, Any] = yaml.safe_load(base.read_text())
    if [r["name"] for r in config["receivers"]] != [RECEIVER]:
        raise ConfigError(f"{base}: expected one receiver, named {RECEIVER}")
    config["receivers"] = [{"name": RECEIVER, **_integrations(alerting, secrets_dir)}]
    header = (
        f"# Rendered from {base.relative_to(INFRA.parent)} and the {PREFIX}* settings by\n"
        "# ops/stack/alerting.py (`invoke up`, `invoke secrets.generate`): edit those.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, width=100)


def write(project: Project, *, directory: Path | None = None, dry_run: bool = False) -> Written:
    """Render into the project's secrets directory (or `directory`); rewritten only when it
    differs. In place rather than replaced: compose bind-mounts a secret file by its inode, so
    a running Alertmanager reads the new text on its next reload only if the inode stays."""
    target = directory or Path(project.environ()["SECRETS_DIR"])
    text = render(settings(environment(project)), target)
    path = target / CONFIG_FILE
    if path.is_file() and path.read_text() == text:
        return Written(CONFIG_FILE, path, "kept")
    action = "replaced" if path.exists() else "created"
    if dry_run:
        return Written(CONFIG_FILE, path, f"would {action.removesuffix('d')}")
    with path.open("w") as file:
        file.write(text)
    path.chmod(0o644)  # as every secret file: the container's nobody reads it
    return Written(CONFIG_FILE, path, action)
