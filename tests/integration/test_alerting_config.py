"""Alert rules and Alertmanager configuration, checked by the tools that ship with the images
(promtool, amtool, blackbox_exporter): rules unit-tested for every alert and recording rule,
configs valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from ops.paths import INFRA
from ops.stack import alerting
from tests.support.containers import LABELS, image_or_skip

OBS = INFRA / "observability"


def tool(
    var: str, mount: str, *argv: str, target: str = "", extra: dict[Path, str] | None = None
) -> str:
    """Run a tool of an image as nobody with infra/observability/<mount> at /etc/<mount> (or at
    `target`), and the `extra` host paths read-only where they map to."""
    volumes = {str(OBS / mount): {"bind": target or f"/etc/{mount}", "mode": "ro"}}
    volumes |= {str(path): {"bind": bind, "mode": "ro"} for path, bind in (extra or {}).items()}
    client = docker.from_env()
    try:
        out = client.containers.run(
            image_or_skip(var),
            list(argv[1:]),
            entrypoint=argv[0],
            remove=True,
            user="65534:65534",
            volumes=volumes,
            labels=dict(LABELS),
            stderr=True,
        )
    finally:
        client.close()
    return bytes(out).decode()


def _rules() -> list[dict[str, Any]]:
    """Every rule of every file Prometheus loads (its rule_files: rules/*.yml)."""
    return [
        rule
        for path in sorted((OBS / "prometheus/rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def test_promtool_unit_tests_cover_and_pass_for_every_rule() -> None:
    tests = yaml.safe_load((OBS / "prometheus/tests/alerts_test.yml").read_text())
    loaded = {Path(f).name for f in tests["rule_files"]}
    assert loaded == {p.name for p in (OBS / "prometheus/rules").glob("*.yml")}, "a rule file"
    alerts = {c["alertname"] for t in tests["tests"] for c in t.get("alert_rule_test", [])}
    exprs = [c["expr"] for t in tests["tests"] for c in t.get("promql_expr_test", [])]
    assert {r["alert"] for r in _rules() if "alert" in r} == alerts, "an alert without a test"
    records = {r["record"] for r in _rules() if "record" in r}
    assert {r for r in records if not any(r in e for e in exprs)} == set(), "a record untested"
    _promtool_test("alerts_test.yml")


def test_promtool_unit_tests_of_dashboard_expressions_pass() -> None:
    _promtool_test("dashboards_test.yml")


def _promtool_test(name: str) -> None:
    out = tool("PROMETHEUS_IMAGE", "prometheus", "/bin/promtool", "test", "rules",
               f"/etc/prometheus/tests/{name}")  # fmt: skip
    assert "SUCCESS" in out, out


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.swarm.yml"])
def test_prometheus_config_and_rules_are_valid(config: str) -> None:
    out = tool(
        "PROMETHEUS_IMAGE",
        "prometheus",
        "/bin/promtool",
        "check",
        "config",
        "--syntax-only",
        f"/etc/prometheus/{config}",
    )
    assert "SUCCESS" in out and "FAILED" not in out, out


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.swarm.yml"])
def test_prometheus_config_passes_the_full_check_with_its_secrets(
    config: str, tmp_path: Path
) -> None:
    """Without --syntax-only: the rule files are checked and linted too, and every
    credentials_file must exist, as the compose file's secrets make them."""
    secrets: dict[Path, str] = {}
    for name in ("qdrant_api_key", "minio_prometheus_token"):
        (tmp_path / name).write_text("test-credential\n")
        (tmp_path / name).chmod(0o644)
        secrets[tmp_path / name] = f"/run/secrets/{name}"
    out = tool(
        "PROMETHEUS_IMAGE",
        "prometheus",
        "/bin/promtool",
        "check",
        "config",
        f"/etc/prometheus/{config}",
        extra=secrets,
    )
    rule_files = len(list((OBS / "prometheus/rules").glob("*.yml")))
    assert "FAILED" not in out and f"SUCCESS: {rule_files} rule files found" in out, out


def test_blackbox_config_is_valid() -> None:
    out = tool(
        "BLACKBOX_EXPORTER_IMAGE",
        "blackbox",
        "/bin/blackbox_exporter",
        "--config.check",
        "--config.file=/etc/blackbox_exporter/config.yml",
        target="/etc/blackbox_exporter",
    )
    assert "Config file is ok" in out, out


def test_alertmanager_config_is_valid() -> None:
    """The base, which is also what the default settings render (the webhook only)."""
    out = tool(
        "ALERTMANAGER_IMAGE",
        "alertmanager",
        "/bin/amtool",
        "check-config",
        "/etc/alertmanager/alertmanager.yml",
    )
    assert "SUCCESS" in out and " - 1 templates" in out, out


def test_alertmanager_config_with_every_receiver_is_valid(tmp_path: Path) -> None:
    """Rendered with email, Slack, WeCom and webhook on, checked where compose mounts it: the
    secret /run/secrets/alertmanager.yml beside templates/ at /etc/alertmanager/templates."""
    (tmp_path / alerting.WECHAT_SECRET).write_text("wecom-secret\n")
    settings = alerting.AlertSettings(
        receivers=("email", "slack", "wechat", "webhook"),
        smtp_smarthost="smtp.example.com:587",
        smtp_from="alerts@example.com",
        smtp_username="alerts",
        email_to="ops@example.com",
        slack_channel="#ops",
        wechat_corp_id="corp",
        wechat_agent_id="1000002",
        wechat_to_party="2",
    )
    rendered = tmp_path / alerting.CONFIG_FILE
    rendered.write_text(alerting.render(settings, tmp_path))
    rendered.chmod(0o644)
    out = tool(
        "ALERTMANAGER_IMAGE",
        "alertmanager/templates",
        "/bin/amtool",
        "check-config",
        "/run/secrets/alertmanager.yml",
        target="/etc/alertmanager/templates",
        extra={rendered: "/run/secrets/alertmanager.yml"},
    )
    assert "SUCCESS" in out and " - 1 receivers" in out and " - 1 templates" in out, out


@pytest.mark.parametrize("name", ["coach.text", "coach.wechat.message", "coach.email.html"])
def test_notification_templates_render_runbook_and_links(name: str) -> None:
    """amtool's example data (two alerts without annotations, a generator URL and an external
    URL) through each receiver's body: it parses and carries the runbook and both links."""
    out = tool(
        "ALERTMANAGER_IMAGE",
        "alertmanager/templates",
        "/bin/amtool",
        "template",
        "render",
        "--template.glob=/etc/alertmanager/templates/*.tmpl",
        # A last line without a newline can get lost from the captured output.
        f'--template.text={{{{ template "{name}" . }}}}\n',
        target="/etc/alertmanager/templates",
    )
    assert out.count("Runbook: ") == 2 and "https://generatorurl.com" in out, out
    assert "https://example.com/#/alerts?receiver=" in out, out
