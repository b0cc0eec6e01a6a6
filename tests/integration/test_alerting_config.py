"""Alert rules and Alertmanager configuration, checked by the tools that ship with the images
(promtool, amtool): rules unit-tested for every alert, configs valid."""

from __future__ import annotations

import re

import docker
import yaml

from ops.paths import INFRA
from tests.support.containers import LABELS, image_or_skip

OBS = INFRA / "observability"


def tool(var: str, mount: str, *argv: str) -> str:
    client = docker.from_env()
    try:
        out = client.containers.run(
            image_or_skip(var),
            list(argv[1:]),
            entrypoint=argv[0],
            remove=True,
            user="65534:65534",
            volumes={str(OBS / mount): {"bind": f"/etc/{mount}", "mode": "ro"}},
            labels=dict(LABELS),
            stderr=True,
        )
    finally:
        client.close()
    return bytes(out).decode()


def test_promtool_unit_tests_cover_and_pass_for_every_alert() -> None:
    rules = yaml.safe_load((OBS / "prometheus/rules/alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = (OBS / "prometheus/tests/alerts_test.yml").read_text()
    assert alerts == set(re.findall(r"alertname:\s*(\w+)", tests)), "an alert without a test"
    out = tool(
        "PROMETHEUS_IMAGE",
        "prometheus",
        "/bin/promtool",
        "test",
        "rules",
        "/etc/prometheus/tests/alerts_test.yml",
    )
    assert "SUCCESS" in out, out


def test_prometheus_config_and_rules_are_valid() -> None:
    out = tool(
        "PROMETHEUS_IMAGE",
        "prometheus",
        "/bin/promtool",
        "check",
        "config",
        "--syntax-only",
        "/etc/prometheus/prometheus.yml",
    )
    assert "SUCCESS" in out and "FAILED" not in out, out


def test_alertmanager_config_is_valid() -> None:
    out = tool(
        "ALERTMANAGER_IMAGE",
        "alertmanager",
        "/bin/amtool",
        "check-config",
        "/etc/alertmanager/alertmanager.yml",
    )
    assert "SUCCESS" in out, out
