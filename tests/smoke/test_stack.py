"""`invoke up` on this machine: every service whose image can be had is healthy, the others
are named; the coach's flows work end to end through nginx."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from ops.images.catalog import load_images
from ops.stack import roles
from ops.stack.project import Project
from ops.stack.up import status_rows
from tests.smoke.conftest import SmokeStack
from tests.support import apikeys, flow
from tests.support.processes import wait_until
from tests.support.prod import prod_stack
from tests.support.samples import FIB

SERVICES = [
    "prometheus",
    "alertmanager",
    "grafana",
    "jaeger",
    "postgres-exporter",
    "redis-exporter",
    "nginx-exporter",
    "node-exporter",
    "blackbox-exporter",
    "backend",
    "celery-worker",
    "celery-beat",
    "migrate",
    "postgres",
    "redis",
    "qdrant",
    "minio",
    "minio-init",
    "nginx",
]


@pytest.mark.parametrize("service", SERVICES)
def test_service_is_healthy_or_named_as_unobtainable(smoke: SmokeStack, service: str) -> None:
    rows = {
        row[0]: row
        for row in status_rows(smoke.project, smoke.result.resolved, smoke.result.left_out)
    }
    _, state, health, image, source, note = rows[service]
    if state == "skipped":
        assert image in {str(r) for r in load_images().values()}
        assert "unobtainable" in note
        pytest.skip(f"image {image} unobtainable here; the stack runs without {service}")
    if service in roles.one_shot(smoke.project.config()):
        assert state == "exited 0"
    else:
        # The official nginx exporter is FROM scratch: nothing to run a healthcheck with;
        # Prometheus' up{job="nginx"} watches it instead (test_prometheus_scrapes_...).
        expected = "-" if service == "nginx-exporter" else "healthy"
        assert (state, health) == ("running", expected), rows[service]
    assert source in {"built", "local", "pulled", "baked"}


def test_upload_index_ask_through_nginx(smoke: SmokeStack) -> None:
    with smoke.client() as http:
        flow.upload_index_ask(http)


def test_nginx_edge_rules(smoke: SmokeStack) -> None:
    with smoke.client() as http:
        assert http.get("/healthz").text == "ok\n"
        assert http.get("/health/ready").status_code == 200
        assert http.get("/metrics").status_code == 404, "metrics are internal"
        assert http.get("/health").status_code == 404, "the deep health check is internal"
        echoed = http.get("/health/live", headers={"X-Request-ID": "smoke-req-0001"})
        assert echoed.headers.get_list("x-request-id") == ["smoke-req-0001"]
        made = http.get("/health/live").headers.get_list("x-request-id")
        assert len(made) == 1 and len(made[0]) == 32
        too_big = http.post(
            "/api/v1/snippets",
            content=b"x" * (2 * 1024 * 1024),
            headers={"content-type": "application/json"},
        )
        assert too_big.status_code == 413
        logs = smoke.project.run(
            "logs", "--no-color", "--no-log-prefix", "nginx", capture=True, quiet=True
        ).stdout
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(
        line["request_id"] == "smoke-req-0001" and line["uri"] == "/health/live" for line in lines
    ), "nginx logs JSON lines carrying the request id"


def test_backend_restart_gives_no_502_once_healthy(smoke: SmokeStack) -> None:
    project: Project = smoke.project
    project.run("restart", "backend", quiet=True)

    def backend_healthy() -> bool:
        rows = {r["Service"]: r for r in project.ps()}
        return bool(rows["backend"].get("Health") == "healthy")

    wait_until(backend_healthy, seconds=90, what="backend healthy again after restart")
    statuses: list[int] = []
    deadline = time.monotonic() + 30
    with smoke.client() as http:
        while len(statuses) < 50 and time.monotonic() < deadline:
            statuses.append(http.get("/api/v1/snippets").status_code)
    assert statuses and set(statuses) == {200}, statuses


def test_prod_stack_comes_up_healthy_hardened(
    docker_host: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The production file set on this machine: read-only roots, dropped capabilities, limits,
    secrets from a directory of its own — and still every available service healthy."""
    with prod_stack("coach-smoke-prod", tmp_path_factory.mktemp("prod-secrets")) as prod:
        # Qdrant and MinIO images may not be had here: production then runs degraded, as allowed.
        assert prod.result.ok, prod.result.failed
        # No development key in production: one made the operators' way (`keys.create`).
        assert not (prod.secrets_dir / "api_key").exists()
        key = prod.create_key(scope="read")
        with prod.client() as https:
            ready = https.get("/health/ready")
            listed = https.get("/api/v1/snippets", headers=apikeys.headers(key))
            anonymous = https.get("/api/v1/snippets")
            docs = https.get("/api/v1/docs")
        assert docs.status_code == 404, "no Swagger UI in production by default"
        assert ready.status_code == 200
        assert ready.headers["strict-transport-security"] == "max-age=63072000"
        assert (listed.status_code, anonymous.status_code) == (200, 401), listed.text


def test_prometheus_scrapes_every_target_and_sees_llm_requests(smoke: SmokeStack) -> None:
    with smoke.client() as http:
        accepted = http.post(
            "/api/v1/snippets", json={"title": "prom.py", "language": "python", "content": FIB}
        )
        assert accepted.status_code == 202
        wait_until(
            lambda: (
                http.get(f"/api/v1/snippets/{accepted.json()['id']}").json()["status"] == "indexed"
            ),
            seconds=60,
            what="snippet indexed",
        )
        assert http.post("/api/v1/coach/ask", json={"question": "fibonacci?"}).status_code == 200
    prometheus = httpx.Client(base_url=smoke.prometheus_url, timeout=10)
    # Qdrant's and MinIO's jobs find their targets by DNS: none where they are left out. The
    # tls job is up without --tls too (blackbox-exporter answers; its probe fails).
    stores = {"qdrant": "qdrant", "minio": "minio"}
    jobs = ["prometheus", "alertmanager", "backend", "worker", "postgres", "redis", "nginx"]
    jobs += ["node", "tls"] + [j for j, s in stores.items() if s not in smoke.result.left_out]

    def targets_up() -> bool:
        active = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active} == dict.fromkeys(jobs, "up")

    wait_until(targets_up, seconds=90, what="every Prometheus target up", interval=2)
    series: list[dict[str, object]] = []

    def llm_series() -> bool:
        body = prometheus.get("/api/v1/query", params={"query": "coach_llm_requests_total"}).json()
        series[:] = body["data"]["result"]
        return bool(series)

    wait_until(llm_series, seconds=60, what="coach_llm_requests_total scraped", interval=2)
    labels = series[0]["metric"]
    assert isinstance(labels, dict) and {"model", "status"} <= set(labels), labels
    assert labels["status"] == "ok"
