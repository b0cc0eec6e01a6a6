"""Observability on the live stack, after the smoke flow: every dashboard expression parses
and returns data, every alert rule is loaded, and the services' logs are JSON lines that carry
the trace id of the request that caused them — in the backend and in the worker."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from ops.paths import INFRA
from tests.smoke.conftest import SmokeStack
from tests.support.processes import wait_until
from tests.support.samples import FIB

DASHBOARDS = sorted((INFRA / "observability" / "grafana" / "dashboards").glob("*.json"))
# Panels that are empty by design on a healthy stack after the smoke flow, and why.
ERROR_ONLY = {
    "Failed and retried tasks by task": "only failed or retried tasks produce series",
    "5xx ratio by route": "no route answered 5xx in the smoke flow",
}
REQUIRED_KEYS = {"timestamp", "level", "logger", "event", "service", "version", "environment"}


def _targets() -> list[tuple[str, str, str]]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((path.stem, panel["title"], target["expr"]))
    return found


TARGETS = _targets()


@pytest.fixture(scope="module")
def after_flow(smoke: SmokeStack) -> dict[str, Any]:
    """One upload (indexed by the worker) and one ask through nginx; Prometheus has scraped."""
    with smoke.client() as http:
        upload = http.post(
            "/api/v1/snippets", json={"title": "obs.py", "language": "python", "content": FIB}
        )
        sid = upload.json()["id"]
        wait_until(
            lambda: http.get(f"/api/v1/snippets/{sid}").json()["status"] == "indexed",
            seconds=60,
            what="snippet indexed",
        )
        ask = http.post("/api/v1/coach/ask", json={"question": "fibonacci loop?"})
    prometheus = httpx.Client(base_url=smoke.prometheus_url, timeout=10)

    def scraped_after_ask() -> bool:
        # Rates need two samples of a series inside their window, from each scraped process:
        # the worker (the agent's LLM calls) and the backend (the HTTP requests).
        queries = (
            'count_over_time(llm_requests_total{status="ok"}[2m]) >= 2',
            'count_over_time(http_requests_total{job="backend",'
            'route="/api/v1/coach/ask"}[2m]) >= 2',
        )
        return all(
            prometheus.get("/api/v1/query", params={"query": q}).json()["data"]["result"]
            for q in queries
        )

    wait_until(scraped_after_ask, seconds=90, what="the ask scraped by Prometheus", interval=2)
    return {"upload": upload, "ask": ask, "prometheus": prometheus}


@pytest.mark.parametrize(
    ("dashboard", "panel", "expr"), TARGETS, ids=[f"{d}:{p}" for d, p, _ in TARGETS]
)
def test_dashboard_expression_parses_and_has_data(
    after_flow: dict[str, Any], dashboard: str, panel: str, expr: str
) -> None:
    # Grafana's own variables become fixed windows for a direct query.
    query = expr.replace("$__rate_interval", "2m").replace("$__range", "1h")
    response = after_flow["prometheus"].get("/api/v1/query", params={"query": query})
    assert response.status_code == 200, f"{dashboard}/{panel}: {response.text}"
    if panel in ERROR_ONLY:
        return
    assert response.json()["data"]["result"], f"{dashboard}/{panel} shows no data: {query}"


def test_every_alert_rule_is_loaded_and_healthy(after_flow: dict[str, Any]) -> None:
    groups = after_flow["prometheus"].get("/api/v1/rules").json()["data"]["groups"]
    rules = {r["name"]: r["health"] for g in groups for r in g["rules"]}
    expected = {
        "BackendDown",
        "High5xxRatio",
        "HighP95Latency",
        "LLMErrorRatio",
        "LLMUnavailable",
        "WorkerHeartbeatStale",
        "QueueBacklog",
        "PostgresDown",
        "RedisDown",
    }
    assert expected <= set(rules)
    assert {name: health for name, health in rules.items() if health != "ok"} == {}


def test_logs_are_json_and_carry_the_request_trace_into_the_worker(
    smoke: SmokeStack, after_flow: dict[str, Any]
) -> None:
    trace_id = after_flow["upload"].headers["x-trace-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    seen: dict[str, int] = {}
    for service in ("backend", "celery-worker"):
        out = smoke.project.run(
            "logs", "--no-color", "--no-log-prefix", service, capture=True, quiet=True
        ).stdout
        lines = [line for line in out.splitlines() if line.strip()]
        assert lines, service
        for line in lines:
            record = json.loads(line)  # every line is one JSON object
            assert set(record) >= REQUIRED_KEYS, (service, record)
        seen[service] = sum(json.loads(line).get("trace_id") == trace_id for line in lines)
    assert seen["backend"] > 0 and seen["celery-worker"] > 0, seen
