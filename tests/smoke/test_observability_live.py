"""Observability on the live stack, after the smoke flow: every dashboard expression parses
and returns data (every template variable on All), every variable lists values, every alert
rule is loaded, the services' logs are JSON lines that carry the trace id of the request that
caused them — in the backend and in the worker — and, scaled to two backend and two worker
replicas, Prometheus scrapes each one and the panels sum them."""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.smoke.conftest import SmokeStack
from tests.support import dashboards
from tests.support.processes import wait_until
from tests.support.samples import FIB

# Panels that are empty by design on a healthy stack after the smoke flow, and why.
ERROR_ONLY = {
    "Failed and retried tasks by task": "only failed or retried tasks produce series",
    "5xx ratio by route": "no route answered 5xx in the smoke flow",
}
REQUIRED_KEYS = {"timestamp", "level", "logger", "event", "service", "version", "environment"}


TARGETS = dashboards.panel_expressions()
ANNOTATIONS = dashboards.annotation_expressions()
VARIABLES = [
    (path.stem, variable)
    for path in dashboards.paths()
    for variable in dashboards.variables(dashboards.load(path)).values()
    if variable["type"] == "query"
]


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
            'count_over_time(coach_llm_requests_total{status="ok"}[2m]) >= 2',
            'count_over_time(coach_http_requests_total{job="backend",'
            'route="/api/v1/coach/ask"}[2m]) >= 2',
        )
        return all(
            prometheus.get("/api/v1/query", params={"query": q}).json()["data"]["result"]
            for q in queries
        )

    wait_until(scraped_after_ask, seconds=90, what="the ask scraped by Prometheus", interval=2)
    return {"upload": upload, "ask": ask, "prometheus": prometheus}


@pytest.mark.parametrize("target", TARGETS, ids=[t.id for t in TARGETS])
def test_dashboard_expression_parses_and_has_data(
    after_flow: dict[str, Any], target: dashboards.Expression
) -> None:
    # As Grafana sends it by default: its own variables as fixed windows, ours on All.
    query = dashboards.substitute(target.expr, dashboards.dashboard_of(target))
    response = after_flow["prometheus"].get("/api/v1/query", params={"query": query})
    assert response.status_code == 200, f"{target.id}: {response.text}"
    if target.where in ERROR_ONLY:
        return
    assert response.json()["data"]["result"], f"{target.id} shows no data: {query}"


@pytest.mark.parametrize("annotation", ANNOTATIONS, ids=[a.id for a in ANNOTATIONS])
def test_annotation_expression_parses(
    after_flow: dict[str, Any], annotation: dashboards.Expression
) -> None:
    # Data only for 2 minutes after a rollout (tests/dashboards_test.yml proves what it marks).
    query = dashboards.substitute(annotation.expr, dashboards.dashboard_of(annotation))
    response = after_flow["prometheus"].get("/api/v1/query", params={"query": query})
    assert response.status_code == 200, f"{annotation.id}: {response.text}"


@pytest.mark.parametrize(
    ("dashboard", "variable"), VARIABLES, ids=[f"{d}:{v['name']}" for d, v in VARIABLES]
)
def test_dashboard_variable_lists_values(
    after_flow: dict[str, Any], dashboard: str, variable: dict[str, Any]
) -> None:
    selector, label = dashboards.label_values(variable)
    match = dashboards.substitute(
        selector, dashboards.load(dashboards.DIRECTORY / f"{dashboard}.json")
    )
    values = (
        after_flow["prometheus"]
        .get(f"/api/v1/label/{label}/values", params={"match[]": match})
        .json()["data"]
    )
    assert values, f"{dashboard}: ${variable['name']} would offer nothing: {match}"


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


# Several replicas: each one a target, the panels their sum.

APP_SERVICES = {"backend": "backend", "worker": "celery-worker"}  # job -> compose service
# The panel that sums a counter over the backend's instances, and the one showing each of them.
TOTAL, PER_INSTANCE = "Request rate", "Request rate by instance"


def _healthy_targets(prometheus: httpx.Client) -> Counter[str]:
    active = prometheus.get("/api/v1/targets", params={"state": "active"}).json()
    return Counter(
        t["labels"]["job"]
        for t in active["data"]["activeTargets"]
        if t["labels"]["job"] in APP_SERVICES and t["health"] == "up"
    )


def _scale(smoke: SmokeStack, replicas: int) -> None:
    # The project `up` ran (its OTLP endpoint included), so new replicas match the old ones;
    # --no-recreate and --no-deps leave every other container as it is.
    smoke.result.project.run(
        "up",
        "--detach",
        "--wait",
        "--wait-timeout",
        "180",
        "--no-deps",
        "--no-recreate",
        *(f"--scale={service}={replicas}" for service in APP_SERVICES.values()),
        *APP_SERVICES.values(),
    )


@pytest.fixture
def two_replicas(smoke: SmokeStack, after_flow: dict[str, Any]) -> Iterator[httpx.Client]:
    prometheus: httpx.Client = after_flow["prometheus"]
    _scale(smoke, 2)
    try:
        wait_until(
            lambda: _healthy_targets(prometheus) == Counter(backend=2, worker=2),
            seconds=120,
            what="2 healthy backend and 2 healthy worker targets",
            interval=2,
        )
        yield prometheus
    finally:
        _scale(smoke, 1)
        wait_until(
            lambda: _healthy_targets(prometheus) == Counter(backend=1, worker=1),
            seconds=120,
            what="back to 1 backend and 1 worker target",
            interval=2,
        )


def _panel_query(title: str) -> str:
    [target] = [t for t in TARGETS if t.dashboard == "service-overview" and t.where == title]
    return dashboards.substitute(target.expr, dashboards.dashboard_of(target))


def _at(prometheus: httpx.Client, query: str, when: float) -> list[dict[str, Any]]:
    body = prometheus.get("/api/v1/query", params={"query": query, "time": f"{when:.3f}"}).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_each_replica_is_scraped_and_the_panel_is_their_sum(
    smoke: SmokeStack, two_replicas: httpx.Client
) -> None:
    prometheus = two_replicas
    active = prometheus.get("/api/v1/targets", params={"state": "active"}).json()
    instances = {
        job: sorted(
            t["labels"]["instance"]
            for t in active["data"]["activeTargets"]
            if t["labels"]["job"] == job
        )
        for job in APP_SERVICES
    }
    # instance is each replica's own address (the default), not the service's name.
    for job, port in (("backend", 8000), ("worker", 9808)):
        assert len(set(instances[job])) == 2, instances
        assert all(re.fullmatch(rf"[0-9.]+:{port}", i) for i in instances[job]), instances
    heartbeats = 'count by (instance) (coach_worker_heartbeat_timestamp_seconds{job="worker"})'
    wait_until(
        lambda: (
            sorted(r["metric"]["instance"] for r in _at(prometheus, heartbeats, time.time()))
            == instances["worker"]
        ),
        seconds=60,
        what="a heartbeat series from each worker replica",
        interval=2,
    )
    per_instance_query = _panel_query(PER_INSTANCE)
    seen_at: list[float] = []

    def both_serving() -> bool:
        # nginx resolves the backend's name every 5 s and spreads requests over the answers;
        # a new replica's rate needs two scrapes of its counter inside the window.
        with smoke.client() as http:
            for _ in range(10):
                assert http.get("/api/v1/snippets").status_code == 200
        now = time.time()
        rates = _at(prometheus, per_instance_query, now)
        if len([r for r in rates if float(r["value"][1]) > 0]) != 2:
            return False
        seen_at.append(now)
        return True

    wait_until(both_serving, seconds=120, what="both backend replicas serving traffic", interval=3)
    # The evaluation time at which both replicas had a rate, for both queries: the same samples.
    when = seen_at[-1]
    [total] = _at(prometheus, _panel_query(TOTAL), when)
    per_instance = {
        r["metric"]["instance"]: float(r["value"][1])
        for r in _at(prometheus, per_instance_query, when)
    }
    print(f"targets {instances}; {TOTAL} {float(total['value'][1]):.6f} = sum of {per_instance}")
    assert sorted(per_instance) == instances["backend"]
    assert all(value > 0 for value in per_instance.values()), per_instance
    assert math.isclose(float(total["value"][1]), sum(per_instance.values()), rel_tol=1e-9)
