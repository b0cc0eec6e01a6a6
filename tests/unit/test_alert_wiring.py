"""The alert rules, the scrape jobs and the compose services agree, read from the files: every
job a rule selects is scraped, every credential a job reads is a secret of the prometheus
service, every exporter a job scrapes is a service, and the data-root the node-exporter
service mounts is the one EngineDataRootAlmostFull watches."""

from __future__ import annotations

import re
from typing import Any

import yaml

from ops.paths import COMPOSE_DIR, INFRA

PROMETHEUS = INFRA / "observability" / "prometheus"


def _yaml(path: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


RULES = [
    rule
    for path in sorted((PROMETHEUS / "rules").glob("*.yml"))
    for group in _yaml(path)["groups"]
    for rule in group["rules"]
]
JOBS = {job["job_name"]: job for job in _yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"]}
SERVICES: dict[str, Any] = _yaml(COMPOSE_DIR / "docker-compose.yml")["services"]


def test_every_job_a_rule_selects_is_scraped() -> None:
    selected = {
        job
        for rule in RULES
        for matcher in re.findall(r'job=~?"([^"]+)"', rule["expr"])
        for job in matcher.split("|")
    }
    assert selected and selected <= set(JOBS), sorted(selected - set(JOBS))


def test_every_credentials_file_is_a_secret_of_the_prometheus_service() -> None:
    files = {
        job["authorization"]["credentials_file"] for job in JOBS.values() if "authorization" in job
    }
    assert files == {f"/run/secrets/{name}" for name in SERVICES["prometheus"]["secrets"]}


def test_exporter_jobs_scrape_compose_services() -> None:
    node = JOBS["node"]["static_configs"][0]["targets"][0]
    assert node.split(":")[0] == "node-exporter" and node.endswith(":9100")
    exporter = [r for r in JOBS["tls"]["relabel_configs"] if r["target_label"] == "__address__"]
    assert exporter[0]["replacement"].split(":")[0] == "blackbox-exporter"
    assert {"node-exporter", "blackbox-exporter"} <= set(SERVICES)
    assert "app" in SERVICES["prometheus"]["networks"], "Qdrant and MinIO are on app only"


def test_the_mounted_data_root_is_the_one_the_alert_watches() -> None:
    (mount,) = [
        v
        for v in SERVICES["node-exporter"]["volumes"]
        if isinstance(v, dict) and "ENGINE_DATA_ROOT" in v["source"]
    ]
    default = re.fullmatch(r"\$\{ENGINE_DATA_ROOT:-([^}]+)\}", mount["source"])
    assert default and mount["target"] == "/host/root" + mount["source"]
    (rule,) = [
        r for r in RULES if r.get("alert") == "EngineDataRootAlmostFull" and "< 0.10" in r["expr"]
    ]
    (pattern,) = set(re.findall(r'mountpoint=~"([^"]+)"', rule["expr"]))
    # node-exporter reports the target without its --path.rootfs prefix: the host's path.
    assert re.fullmatch(pattern, default[1]), (pattern, default[1])
    assert "--path.rootfs=/host/root" in SERVICES["node-exporter"]["command"]
