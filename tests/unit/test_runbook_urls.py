"""Every alert's runbook link is absolute and lands on its section: each rule's runbook_url is
the docs' public URL (Prometheus' external label docs_url, expanded from COACH_DOCS_URL, which
compose always sets) followed by operations.md and an anchor that exists there. Read from the
files, so a rule added without it fails here before it reaches a chat as a relative path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ops.paths import COMPOSE_DIR, INFRA
from tests.support import docs

PROMETHEUS = INFRA / "observability" / "prometheus"
PREFIX = "{{ $externalLabels.docs_url }}/"
RUNBOOK = re.compile(r"operations\.md#(?P<anchor>[a-z0-9-]+)")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


ALERTS = [
    rule
    for path in sorted((PROMETHEUS / "rules").glob("*.yml"))
    for group in _yaml(path)["groups"]
    for rule in group["rules"]
    if "alert" in rule
]
PROMETHEUS_SERVICE = _yaml(COMPOSE_DIR / "docker-compose.yml")["services"]["prometheus"]
DEFAULT = re.fullmatch(
    r"\$\{COACH_DOCS_URL:-([^}]+)\}", PROMETHEUS_SERVICE["environment"]["COACH_DOCS_URL"]
)


@pytest.mark.parametrize(
    "rule", ALERTS, ids=[f"{r['alert']}-{r['labels']['severity']}" for r in ALERTS]
)
def test_runbook_url_is_absolute_and_its_anchor_exists(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    assert url.startswith(PREFIX), f"{url!r}: not {PREFIX}operations.md#<anchor>"
    match = RUNBOOK.fullmatch(url.removeprefix(PREFIX))
    assert match, f"{url!r}: not {PREFIX}operations.md#<anchor>"
    assert match["anchor"] in docs.anchors(docs.DOCS / "operations.md"), match["anchor"]
    assert match["anchor"] == f"alert-{rule['alert'].lower()}", "its own section"
    assert DEFAULT, "COACH_DOCS_URL has a default"
    rendered = urlsplit(url.replace(PREFIX, DEFAULT[1].rstrip("/") + "/"))
    assert rendered.scheme in {"http", "https"} and rendered.netloc, rendered


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.swarm.yml"])
def test_docs_url_is_an_external_label_expanded_from_the_environment(config: str) -> None:
    loaded = _yaml(PROMETHEUS / config)
    assert loaded["global"]["external_labels"]["docs_url"] == "${COACH_DOCS_URL}"
    # Dropped from the alerts sent: a link for the templates, not part of an alert's identity.
    drops = loaded["alerting"]["alert_relabel_configs"]
    assert {"action": "labeldrop", "regex": "docs_url"} in drops
    assert "--enable-feature=expand-external-labels" in PROMETHEUS_SERVICE["command"]


def test_the_promtool_tests_expect_the_default_docs_url() -> None:
    """promtool renders the annotations with each group's external labels: the expected
    runbook links are then what a stack with the default setting sends."""
    assert DEFAULT
    groups = _yaml(PROMETHEUS / "tests" / "alerts_test.yml")["tests"]
    assert {g["name"]: g.get("external_labels") for g in groups} == {
        g["name"]: {"docs_url": DEFAULT[1]} for g in groups
    }
