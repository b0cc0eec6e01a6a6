"""Alertmanager's config rendered from settings (ops/stack/alerting.py): the defaults give the
committed base, each receiver turned on adds its integration with its credential as a secret
file (WeCom's inline), missing settings and typos are errors, and production reads .env.prod
under the shell's variables, as compose does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.errors import ConfigError
from ops.paths import COMPOSE_DIR
from ops.stack import alerting
from ops.stack.project import Project

ALL = {
    "COACH_ALERT_RECEIVERS": "email, slack, wechat, webhook",
    "COACH_ALERT_SMTP_SMARTHOST": "smtp.example.com:587",
    "COACH_ALERT_SMTP_FROM": "alerts@example.com",
    "COACH_ALERT_EMAIL_TO": "ops@example.com, oncall@example.com",
    "COACH_ALERT_WECHAT_CORP_ID": "corp",
    "COACH_ALERT_WECHAT_AGENT_ID": "1000002",
    "COACH_ALERT_WECHAT_TO_PARTY": "2",
}


def _rendered(environ: dict[str, str], secrets_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        alerting.render(alerting.settings(environ), secrets_dir)
    )
    return config


def test_the_defaults_render_the_committed_base(tmp_path: Path) -> None:
    assert _rendered({}, tmp_path) == yaml.safe_load(alerting.BASE.read_text())


def test_every_receiver_reads_its_credential_from_a_secret_file(tmp_path: Path) -> None:
    (tmp_path / alerting.WECHAT_SECRET).write_text("wecom-secret\n")
    config = _rendered(ALL | {"COACH_ALERT_SMTP_USERNAME": "alerts"}, tmp_path)
    base = yaml.safe_load(alerting.BASE.read_text())
    assert {k: v for k, v in config.items() if k != "receivers"} == {
        k: v for k, v in base.items() if k != "receivers"
    }, "routes, inhibitions and templates stay the base's"
    (receiver,) = config["receivers"]
    assert receiver["name"] == "coach"
    (email,) = receiver["email_configs"]
    assert email["smarthost"] == "smtp.example.com:587" and email["require_tls"] is True
    assert email["to"] == "ops@example.com, oncall@example.com"
    assert email["auth_password_file"] == "/run/secrets/alertmanager_smtp_password"
    assert receiver["slack_configs"][0]["api_url_file"] == "/run/secrets/alertmanager_slack_url"
    assert "channel" not in receiver["slack_configs"][0]
    (wechat,) = receiver["wechat_configs"]
    assert wechat["api_secret"] == "wecom-secret" and wechat["to_party"] == "2"
    assert "api_url" not in wechat and "to_user" not in wechat
    webhook = receiver["webhook_configs"][0]
    assert webhook["url_file"] == "/run/secrets/alertmanager_webhook_url"
    # Every text comes from templates/coach.tmpl.
    texts = [email["html"], email["text"], receiver["slack_configs"][0]["text"], wechat["message"]]
    assert all(t.startswith('{{ template "coach.') for t in texts), texts


def test_without_a_username_email_does_not_authenticate(tmp_path: Path) -> None:
    only = {k: v for k, v in ALL.items() if "WECHAT" not in k}
    config = _rendered(only | {"COACH_ALERT_RECEIVERS": "email"}, tmp_path)
    (email,) = config["receivers"][0]["email_configs"]
    assert "auth_username" not in email and "auth_password_file" not in email
    assert set(config["receivers"][0]) == {"name", "email_configs"}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"COACH_ALERT_RECEIVERS": "email"}, "COACH_ALERT_SMTP_SMARTHOST, COACH_ALERT_SMTP_FROM"),
        ({"COACH_ALERT_RECEIVERS": "pager"}, "COACH_ALERT_RECEIVERS: Input should be 'email'"),
        ({"COACH_ALERT_SMTP_HOST": "x"}, "COACH_ALERT_SMTP_HOST: no such setting"),
        (
            ALL | {"COACH_ALERT_WECHAT_TO_PARTY": ""},
            "none of COACH_ALERT_WECHAT_TO_PARTY",
        ),
        (ALL, "alertmanager_wechat_secret is empty"),
    ],
    ids=["email-incomplete", "unknown-receiver", "typo", "wechat-nobody", "wechat-no-secret"],
)
def test_settings_that_cannot_work_are_errors(
    environ: dict[str, str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message):
        alerting.render(alerting.settings(environ), tmp_path)


def test_production_reads_env_prod_under_the_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env.prod"
    env_file.write_text(
        "COACH_ALERT_RECEIVERS=slack\nCOACH_ALERT_SLACK_CHANNEL='#ops'  # the team\n"
    )
    monkeypatch.setenv("PROD_ENV_FILE", str(env_file))
    monkeypatch.setenv("COACH_ALERT_SLACK_CHANNEL", "#oncall")
    settings = alerting.settings(alerting.environment(Project("prod")))
    assert settings.receivers == ("slack",) and settings.slack_channel == "#oncall"


def test_write_renders_into_the_secrets_dir_in_place(tmp_path: Path) -> None:
    project = Project("dev", overrides=(("SECRETS_DIR", str(tmp_path)),))
    first = alerting.write(project)
    assert (first.action, first.path) == ("created", tmp_path / "alertmanager.yml")
    inode = first.path.stat().st_ino
    assert alerting.write(project).action == "kept"
    slack = Project("dev", overrides=(*project.overrides, ("COACH_ALERT_RECEIVERS", "slack")))
    assert alerting.write(slack, dry_run=True).action == "would replace"
    assert alerting.write(slack).action == "replaced"
    assert first.path.stat().st_ino == inode, "a running container's secret mount sees it"
    assert "slack_configs" in first.path.read_text()


def test_the_reader_of_the_rendered_config_is_found_by_its_secret() -> None:
    config = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
    # As `docker compose config` writes them: every secret in the long form.
    for spec in config["services"].values():
        secrets = spec.get("secrets", [])
        spec["secrets"] = [s if isinstance(s, dict) else {"source": s} for s in secrets]
    assert alerting.readers(config) == ["alertmanager"]
