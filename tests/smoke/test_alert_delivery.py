"""A real alert, delivered: on a live observability stack whose Alertmanager has every receiver
on (email, Slack, WeCom, webhook), stopping a target (redis-exporter) fires an alert in
Prometheus, and each receiver gets it with the absolute runbook link that COACH_DOCS_URL makes.

The receivers' settings differ from the shared smoke stack's, so this is a project of its own,
as small as the alert needs (redis, redis-exporter, prometheus, alertmanager) and removed with
its volumes afterwards. The receivers are tests/support/alert_sink.py in a container on that
project's egress network: nothing leaves the Docker networks the test created.

The alert is a test-only rule (for: 0s, written beside a copy of the real rules and mounted by an
override file of this project): the real ones wait a minute or more, and RedisDown reads
redis_up, which a host whose DNS is slow to say "no such name" never gets (the exporter answers
after Prometheus' 10 s scrape timeout, so the scrape fails instead)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import docker
import pytest

from ops.paths import INFRA
from ops.stack import secrets
from ops.stack import up as stacks
from ops.stack.project import Project
from tests.support.compose import isolated_project
from tests.support.containers import LABELS, RUN_ID, image_or_skip
from tests.support.processes import wait_until

SINK = f"alert-sink-{RUN_ID}"  # its container name, which the project's networks resolve
SINK_SCRIPT = Path(__file__).resolve().parent.parent / "support" / "alert_sink.py"
DOCS_URL = "https://docs.example.test/coach"
RUNBOOK = f"{DOCS_URL}/operations.md#alert-redisdown"
SERVICES = ("redis", "redis-exporter", "prometheus", "alertmanager")
ALERT = "DeliveryTestTargetDown"
TITLE = f"[FIRING:1] {ALERT} (critical)"  # templates/coach.tmpl, coach.title
TEST_RULES = f"""\
groups:
  - name: alert-delivery-test
    rules:
      - alert: {ALERT}
        expr: up{{job="redis"}} == 0
        labels:
          severity: critical
        annotations:
          summary: "redis-exporter is not scraped"
          description: "Stopped by tests/smoke/test_alert_delivery.py."
          runbook_url: "{{{{ $externalLabels.docs_url }}}}/operations.md#alert-redisdown"
"""
# Scrape (15 s) + evaluation (15 s) + group_wait (10 s, critical), with room for a slow,
# shared machine.
DELIVERY_SECONDS = 180


@dataclasses.dataclass(frozen=True)
class _Project(Project):
    """The project with one more compose file: Prometheus reads a copy of its directory."""

    extra_file: Path | None = None

    def files(self) -> list[Path]:
        return [*super().files(), *([self.extra_file] if self.extra_file else [])]


def _prometheus_with_test_rule(directory: Path) -> Path:
    """infra/observability/prometheus plus the test rule, readable by Prometheus' nobody, and
    the override that mounts it instead of the original."""
    config = directory / "prometheus"
    shutil.copytree(INFRA / "observability" / "prometheus", config)
    (config / "rules" / "zz-delivery-test.yml").write_text(TEST_RULES)
    for path in [directory, config, *config.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    override = directory / "compose.delivery-test.yml"
    override.write_text(
        "services:\n  prometheus:\n    volumes: !override\n"
        f"      - {config}:/etc/prometheus:ro\n      - prometheus-data:/prometheus\n"
    )
    return override


def _received(sink: Any) -> list[dict[str, Any]]:
    lines = sink.logs(stdout=True, stderr=False).decode(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _ours(entry: dict[str, Any]) -> bool:
    return ALERT in (entry.get("data") or entry.get("body") or "")


def _by_receiver(received: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    http = [e for e in received if e["kind"] == "http"]
    return {
        "email": [e for e in received if e["kind"] == "smtp" and _ours(e)],
        "slack": [e for e in http if e["path"] == "/slack" and _ours(e)],
        "wechat-token": [e for e in http if e["path"] == "/cgi-bin/gettoken"],
        "wechat": [e for e in http if e["path"] == "/cgi-bin/message/send" and _ours(e)],
        "webhook": [e for e in http if e["path"] == "/webhook" and _ours(e)],
    }


@pytest.fixture(scope="module")
def delivered(
    docker_host: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, list[dict[str, Any]]]]:
    root = tmp_path_factory.mktemp("alert-secrets")
    secret_dir = root / "dev"
    secrets.generate(
        "dev",
        root=root,
        alertmanager_webhook_url=f"http://{SINK}:8080/webhook",
        brought={
            "alertmanager_slack_url": f"http://{SINK}:8080/slack",
            "alertmanager_wechat_secret": "sink-corp-secret",
        },
    )
    isolated, ports = isolated_project("coach-alerts", ("observability",))
    override = _prometheus_with_test_rule(tmp_path_factory.mktemp("alert-prometheus"))
    fields = {f.name: getattr(isolated, f.name) for f in dataclasses.fields(isolated)}
    project = _Project(**fields, extra_file=override)
    settings = {
        "SECRETS_DIR": str(secret_dir),
        "COACH_DOCS_URL": DOCS_URL,
        "COACH_PROMETHEUS_URL": f"http://127.0.0.1:{ports['DEV_PROMETHEUS_PORT']}",
        "COACH_ALERTMANAGER_URL": f"http://127.0.0.1:{ports['DEV_ALERTMANAGER_PORT']}",
        "COACH_ALERT_RECEIVERS": "email,slack,wechat,webhook",
        "COACH_ALERT_SMTP_SMARTHOST": f"{SINK}:2525",
        "COACH_ALERT_SMTP_FROM": "alertmanager@coach.test",
        "COACH_ALERT_SMTP_REQUIRE_TLS": "false",
        "COACH_ALERT_EMAIL_TO": "oncall@coach.test",
        "COACH_ALERT_SLACK_CHANNEL": "#coach-alerts",
        "COACH_ALERT_WECHAT_CORP_ID": "sink-corp",
        "COACH_ALERT_WECHAT_AGENT_ID": "1000002",
        "COACH_ALERT_WECHAT_TO_PARTY": "2",
        "COACH_ALERT_WECHAT_API_URL": f"http://{SINK}:8080/cgi-bin/",
    }
    project = dataclasses.replace(project, overrides=(*project.overrides, *settings.items()))
    client = docker.from_env()
    sink: Any = None
    stacks.down(project, volumes=True)  # leftovers of a killed run
    try:
        prepared = stacks.prepare_stack(project)
        assert prepared.alertmanager.path == secret_dir / "alertmanager.yml"
        assert not set(SERVICES) & set(prepared.left_out), prepared.left_out
        project.run("up", "--detach", "--wait", "--wait-timeout", "180", *SERVICES)
        egress = project.config()["networks"]["egress"]["name"]
        sink = client.containers.run(
            image_or_skip("PYTHON_IMAGE"),
            ["python", "-u", "/sink/alert_sink.py"],
            name=SINK,
            detach=True,
            network=egress,
            user="65534:65534",
            read_only=True,
            labels=dict(LABELS),
            volumes={str(SINK_SCRIPT): {"bind": "/sink/alert_sink.py", "mode": "ro"}},
        )
        wait_until(
            lambda: any(e["kind"] == "ready" for e in _received(sink)),
            seconds=30,
            what="the receivers' sink listening",
        )
        project.run("stop", "redis-exporter")  # the target: up{job="redis"} becomes 0
        try:
            wait_until(
                lambda: all(_by_receiver(_received(sink)).values()),
                seconds=DELIVERY_SECONDS,
                what=f"{ALERT} at every receiver",
                interval=3,
            )
        except TimeoutError as exc:
            counts = {k: len(v) for k, v in _by_receiver(_received(sink)).items()}
            logs = project.run(
                "logs", "--tail", "30", "alertmanager", capture=True, check=False, quiet=True
            ).stdout
            pytest.fail(f"{exc}; received {counts}; alertmanager's last lines:\n{logs}")
        got = _by_receiver(_received(sink))
        for receiver, entries in got.items():  # shown with -s: what each receiver was sent
            print(f"--- {receiver}: {json.dumps(entries[0])[:1500]}")
        yield got
        project.run("start", "redis-exporter")  # the stopped target back, before it all goes
    finally:
        if sink is not None:
            sink.remove(force=True)
        client.close()
        stacks.down(project, volumes=True)
        project.fallback_file.unlink(missing_ok=True)


def test_email_carries_summary_severity_and_absolute_runbook(
    delivered: dict[str, list[dict[str, Any]]],
) -> None:
    mail = delivered["email"][0]
    assert mail["to"] == ["<oncall@coach.test>"], mail["to"]
    message = email.message_from_string(mail["data"], policy=email.policy.default)
    assert message["Subject"].startswith(TITLE), message["Subject"]
    parts = {p.get_content_type(): p.get_content() for p in message.walk() if not p.is_multipart()}
    assert {"text/plain", "text/html"} <= set(parts), set(parts)
    for body in parts.values():
        assert "redis-exporter is not scraped" in body and "critical" in body
        assert RUNBOOK in body, body


def test_slack_gets_an_attachment_with_the_runbook_and_prometheus_links(
    delivered: dict[str, list[dict[str, Any]]],
) -> None:
    payload = json.loads(delivered["slack"][0]["body"])
    assert payload["channel"] == "#coach-alerts"
    (attachment,) = payload["attachments"]
    assert attachment["title"].startswith(TITLE)
    assert attachment["title_link"] == RUNBOOK
    assert f"Runbook: {RUNBOOK}" in attachment["text"], attachment["text"]
    assert "Severity: critical" in attachment["text"]
    assert "Prometheus: http://127.0.0.1:" in attachment["text"], "GeneratorURL, external URL"


def test_wecom_gets_a_token_then_a_text_message_with_the_runbook(
    delivered: dict[str, list[dict[str, Any]]],
) -> None:
    token = parse_qs(delivered["wechat-token"][0]["query"])
    assert token == {"corpid": ["sink-corp"], "corpsecret": ["sink-corp-secret"]}
    send = delivered["wechat"][0]
    assert parse_qs(send["query"]) == {"access_token": ["sink-token"]}
    message = json.loads(send["body"])
    assert message["msgtype"] == "text" and message["agentid"] == "1000002"
    assert message["toparty"] == "2"
    assert message["text"]["content"].startswith(TITLE)
    assert f"Runbook: {RUNBOOK}" in message["text"]["content"]


def test_webhook_gets_alertmanagers_json_with_the_runbook_annotation(
    delivered: dict[str, list[dict[str, Any]]],
) -> None:
    payload = json.loads(delivered["webhook"][0]["body"])
    assert payload["version"] == "4" and payload["status"] == "firing"
    (alert,) = [a for a in payload["alerts"] if a["labels"]["alertname"] == ALERT]
    assert alert["annotations"]["runbook_url"] == RUNBOOK
    assert "docs_url" not in alert["labels"], "dropped by alert_relabel_configs"
