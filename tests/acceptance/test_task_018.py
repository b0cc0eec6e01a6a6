"""TASK-018 "Deployment and Operations": one test per acceptance criterion of the task card,
in the card's order, each asserting the behaviour of the live stack (see conftest.py).

Where an upstream image cannot be had here (Qdrant, MinIO, Grafana, Jaeger), a test checks
everything else first, then skips naming the image. Grafana's own loading of the dashboards is
checked here when its image exists, and by the smoke suite's Grafana health otherwise."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import yaml

from ops.paths import COMPOSE_DIR, INFRA, ROOT
from ops.stack import roles
from ops.stack import secrets as ops_secrets
from ops.stack.project import Project
from tests.acceptance.conftest import Flow, missing_images, unproven
from tests.support import docs
from tests.support.compose import ComposeStack
from tests.support.dashboards import datasource_uid
from tests.support.otlp import ASK_SPANS
from tests.support.processes import wait_until
from tests.support.samples import FIB

APP_ROLES = {
    "backend": "coach-backend",
    "celery-worker": "coach-worker",
    "celery-beat": "coach-beat",
}
# The keys docs/observability.md promises on every line.
LOG_KEYS = {"timestamp", "level", "logger", "event", "service", "version", "environment"}
GRAFANA = INFRA / "observability" / "grafana"
# /health is internal (nginx answers 404): asked inside the backend, as the runbook does.
HEALTH_PROBE = """
import urllib.error, urllib.request
try:
    answer = urllib.request.urlopen("http://127.0.0.1:8000/health", timeout=10)
except urllib.error.HTTPError as error:
    answer = error
print(answer.status, answer.read().decode())
"""


def _records(stack: ComposeStack, service: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stack.log_lines(service) if line.startswith("{")]


def _prometheus(stack: ComposeStack) -> httpx.Client:
    return httpx.Client(base_url=stack.prometheus_url, timeout=10)


def _query(prometheus: httpx.Client, promql: str) -> list[dict[str, Any]]:
    response = prometheus.get("/api/v1/query", params={"query": promql})
    assert response.status_code == 200, f"{promql}: {response.text}"
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def _value(prometheus: httpx.Client, promql: str) -> float:
    """A scalar-like query's value; 0 before any series exists."""
    result = _query(prometheus, promql)
    return float(result[0]["value"][1]) if result else 0.0


@pytest.mark.criterion("`docker-compose up -d` starts every service with one command")
def test_compose_up_starts_every_service(stack: ComposeStack) -> None:
    missing = missing_images(stack)
    left_out = stack.result.left_out
    assert sorted(left_out) == sorted(missing), f"left out {left_out}; no image for {missing}"
    assert stack.result.ok, stack.failures()
    config = stack.project.config()["services"]
    rows = {row["Service"]: row for row in stack.project.ps()}
    engine = docker.from_env()
    try:
        for service, spec in config.items():
            if service in missing:
                continue
            row = rows.get(service)
            assert row is not None, f"{service} not created"
            if service in roles.one_shot({"services": config}):
                assert (row["State"], row["ExitCode"]) == ("exited", 0), row
                continue
            expected = ("running", "healthy" if _has_healthcheck(spec) else "")
            assert (row["State"], row["Health"]) == expected, f"{service}: {row}"
            restarts = engine.containers.get(row["ID"]).attrs["RestartCount"]
            assert restarts == 0, f"{service} restarted {restarts} times"
    finally:
        engine.close()
    if reason := unproven("compose up", missing):
        pytest.skip(reason)


def _has_healthcheck(spec: dict[str, Any]) -> bool:
    return "healthcheck" in spec and not spec["healthcheck"].get("disable")


@pytest.mark.criterion("health checks pass once the services are up")
def test_health_checks_pass(healthy: ComposeStack) -> None:
    out = healthy.project.run(
        "exec", "-T", "backend", "python", "-c", HEALTH_PROBE, capture=True, quiet=True
    ).stdout
    status, _, body = out.strip().partition(" ")
    health = json.loads(body)
    assert (status, health["status"]) == ("200", "healthy"), out
    checks = {name: check["status"] for name, check in health["checks"].items()}
    assert checks == dict.fromkeys(("database", "redis", "qdrant", "object_store", "llm"), "ok")
    assert health["version"] and health["environment"] == "development"
    with healthy.client() as http:
        ready = http.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert {n: c["status"] for n, c in ready.json()["checks"].items()} == {
            "database": "ok",
            "redis": "ok",
        }
        assert http.get("/health/live").json() == {"status": "alive"}
        assert http.get("/healthz").text == "ok\n"
    # Every container's own healthcheck, now (not only when `up --wait` returned).
    config = healthy.project.config()["services"]
    unhealthy = {
        row["Service"]: row["Health"]
        for row in healthy.project.ps()
        if _has_healthcheck(config[row["Service"]]) and row["Health"] != "healthy"
    }
    assert unhealthy == {}
    never_checked = {
        s: image for s, image in missing_images(healthy).items() if _has_healthcheck(config[s])
    }
    if reason := unproven("health checks", never_checked):
        pytest.skip(reason)


@pytest.mark.criterion("Prometheus can scrape the application's metrics")
def test_prometheus_scrapes_app_metrics(healthy: ComposeStack, flow: Flow) -> None:
    prometheus = _prometheus(healthy)
    # Replicas are discovered through DNS: a target is a container's address on that port.
    app_jobs = {"backend": ":8000/metrics", "worker": ":9808/metrics"}

    def app_targets_up() -> bool:
        active = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
        up = {t["labels"]["job"]: t["scrapeUrl"] for t in active if t["health"] == "up"}
        return all(up.get(job, "").endswith(path) for job, path in app_jobs.items())

    wait_until(app_targets_up, seconds=60, what="backend and worker targets up", interval=2)
    # One more ask: its LLM call is counted by the worker (the agent runs there) and its HTTP
    # request by the backend; both counts rise once Prometheus has scraped each.
    counters = (
        'sum(coach_llm_requests_total{status="ok"})',
        'sum(coach_http_requests_total{job="backend", route="/api/v1/coach/ask", status="200"})',
    )
    before = [_value(prometheus, counter) for counter in counters]
    with healthy.client() as http:
        ask = http.post("/api/v1/coach/ask", json={"question": "what does fibonacci return?"})
    assert ask.status_code == 200, ask.text
    wait_until(
        lambda: all(_value(prometheus, c) > b for c, b in zip(counters, before, strict=True)),
        seconds=60,
        what="the new ask counted by backend and worker in Prometheus",
        interval=2,
    )
    series = _query(prometheus, "coach_llm_requests_total")
    assert all({"model", "status"} <= set(s["metric"]) for s in series), series
    builds = {s["metric"]["job"] for s in _query(prometheus, "coach_build_info")}
    assert builds >= set(app_jobs), builds


@pytest.mark.criterion("logs are output as JSON")
def test_logs_are_json(healthy: ComposeStack, flow: Flow) -> None:
    for service in (*APP_ROLES, "migrate"):
        lines = healthy.log_lines(service)
        assert lines, f"{service} wrote nothing"
        not_json = [line for line in lines if not _json_object(line)]
        assert not not_json, f"{service}: {len(not_json)} lines not JSON, e.g. {not_json[:3]}"
        for record in (json.loads(line) for line in lines):
            assert set(record) >= LOG_KEYS, f"{service}: {sorted(LOG_KEYS - set(record))} missing"
            stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
            assert stamp.utcoffset() == timedelta(0), record["timestamp"]
            if service in APP_ROLES:
                assert record["service"] == APP_ROLES[service], record
    # nginx: the access log (stdout) is JSON; its error log goes to stderr as nginx writes it.
    row = next(r for r in healthy.project.ps() if r["Service"] == "nginx")
    engine = docker.from_env()
    try:
        out = engine.containers.get(row["ID"]).logs(stdout=True, stderr=False).decode()
    finally:
        engine.close()
    access = [line for line in out.splitlines() if line.strip()]
    assert access and all(_json_object(line) for line in access), access[:3]
    assert all({"request_id", "status", "uri"} <= set(json.loads(line)) for line in access)


def _json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


@pytest.mark.criterion("every API request carries a complete trace ID")
def test_every_api_request_carries_a_complete_trace_id(healthy: ComposeStack, flow: Flow) -> None:
    responses = [flow.upload, flow.ask]
    caller_trace = secrets.token_hex(16)
    with healthy.client() as http:
        schema = http.get("/api/v1/openapi.json")
        responses.append(schema)
        for path, operations in schema.json()["paths"].items():
            if not path.startswith("/api/"):
                continue  # health endpoints: not the API (and /health is internal)
            url = path.format(snippet_id=flow.snippet_id, task_id=flow.task_id)
            for method in operations:
                # An empty body: a 422 is an API response too, and creates nothing.
                body: dict[str, Any] | None = {} if method in {"post", "put", "patch"} else None
                responses.append(http.request(method.upper(), url, json=body))
        responses.append(http.get("/api/v1/no-such-route"))
        continued = http.get(
            "/api/v1/snippets",
            headers={"traceparent": f"00-{caller_trace}-{secrets.token_hex(8)}-01"},
        )
        responses.append(continued)
    assert continued.headers["x-trace-id"] == caller_trace, "a caller's W3C traceparent continues"
    for response in responses:
        where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
        assert len(response.headers.get_list("x-request-id")) == 1, where
        assert len(response.headers.get_list("x-trace-id")) == 1, where
        assert re.fullmatch(r"(?!0{32})[0-9a-f]{32}", response.headers["x-trace-id"]), where
    # The same ids in the logs: nginx's request id, and the backend's line of every request.
    logged = {(r.get("request_id"), r.get("trace_id")) for r in _records(healthy, "backend")}
    unlogged = [
        f"{r.request.method} {r.request.url.path}"
        for r in responses
        if (r.headers["x-request-id"], r.headers["x-trace-id"]) not in logged
    ]
    assert not unlogged, f"no backend log line with the response's ids: {unlogged}"
    edge = {r["request_id"] for r in _records(healthy, "nginx")}
    assert {r.headers["x-request-id"] for r in responses} <= edge
    # Complete: the upload's and the ask's traces continue into the worker (the agent runs there).
    worker = {r.get("trace_id") for r in _records(healthy, "celery-worker")}
    for response in (flow.upload, flow.ask):
        assert response.headers["x-trace-id"] in worker, response.request.url.path
    jaeger = {s: i for s, i in missing_images(healthy).items() if s == "jaeger"}
    if reason := unproven("trace spans in Jaeger", jaeger):
        pytest.skip(reason)
    _assert_ask_trace_in_jaeger(healthy, flow.ask.headers["x-trace-id"])


def _assert_ask_trace_in_jaeger(stack: ComposeStack, trace_id: str) -> None:
    url = f"http://127.0.0.1:{stack.ports['DEV_JAEGER_PORT']}/api/traces/{trace_id}"
    spans: set[str] = set()

    def complete() -> bool:
        response = httpx.get(url, timeout=5)
        data = response.json().get("data") if response.status_code == 200 else None
        if data:
            spans.update(s["operationName"] for s in data[0]["spans"])
        return spans >= ASK_SPANS

    wait_until(complete, seconds=60, what="the ask's spans in Jaeger", interval=1)


@pytest.mark.criterion("Grafana dashboard templates are provided")
def test_grafana_dashboard_templates_provided_and_valid(healthy: ComposeStack, flow: Flow) -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())
    prometheus_uids = {d["uid"] for d in sources["datasources"] if d["type"] == "prometheus"}
    defaults = {d["type"]: d["uid"] for d in sources["datasources"] if d.get("isDefault")}
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yml").read_text())
    grafana = healthy.project.config()["services"]["grafana"]
    mounted = {
        v["target"] for v in grafana["volumes"] if v["source"] == str(GRAFANA / "dashboards")
    }
    assert {p["options"]["path"] for p in provider["providers"]} <= mounted, (
        "provider reads no mount"
    )
    dashboards = sorted((GRAFANA / "dashboards").rglob("*.json"))
    assert dashboards, "no dashboard templates"
    expressions: list[tuple[str, str]] = []
    uids: list[str] = []
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        uids.append(dashboard["uid"])
        assert dashboard["title"] and dashboard["panels"], path.name
        for panel in _panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                source = target.get("datasource") or panel.get("datasource") or {}
                uid = datasource_uid(dashboard, source, defaults)  # resolves ${datasource}
                assert uid in prometheus_uids, f"{path.name}/{panel['title']}"
                expressions.append((f"{path.stem}/{panel['title']}", target["expr"]))
    assert len(uids) == len(set(uids)), f"dashboard uids repeat: {uids}"
    prometheus = _prometheus(healthy)
    problems = [
        f"{where}: {problem}"
        for where, expr in expressions
        if (problem := _evaluation_problem(prometheus, expr))
    ]
    # Names and labels exist (panels empty by design, e.g. error ratios, still refer to real
    # series); a name known only after the flow's first scrape gets a few scrapes to appear.
    deadline = time.monotonic() + 45
    while unknown := _unknown_series(prometheus, [expr for _, expr in expressions]):
        if time.monotonic() > deadline:
            break
        time.sleep(3)
    assert not problems + unknown, "\n".join(problems + unknown)
    if "grafana" not in missing_images(healthy):
        _assert_grafana_loaded(healthy, set(uids))


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    return [p for panel in panels for p in (panel, *_panels(panel.get("panels", [])))]


def _evaluation_problem(prometheus: httpx.Client, expr: str) -> str | None:
    # Grafana's own variables become fixed windows for a direct query.
    query = re.sub(r"\$__(rate_interval|interval)", "1m", expr).replace("$__range", "1h")
    response = prometheus.get("/api/v1/query", params={"query": query})
    if response.status_code != 200 or response.json().get("status") != "success":
        return f"{query}: {response.text[:200]}"
    return None


_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_NOT_METRICS |= {"unless", "bool", "offset", "inf", "nan"}


def _unknown_series(prometheus: httpx.Client, expressions: list[str]) -> list[str]:
    """Metric names no target exposes, and label names a metric's series do not carry."""
    problems: list[str] = []
    for expr in expressions:
        text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals hold no names
        text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
        text = re.sub(r"\[[^\]]*\]|\$\w+", " ", text)
        for match in _SELECTOR.finditer(text):
            name, braces = match.group(1), match.group(2) or ""
            after = text[match.end() :].lstrip()
            if name.lower() in _NOT_METRICS or (not braces and after.startswith("(")):
                continue  # a keyword or a function
            labels = set(_MATCHER.findall(braces))
            carried = prometheus.get("/api/v1/labels", params={"match[]": name}).json()["data"]
            if not carried:
                problems.append(f"{expr}: no series named {name}")
            elif labels - set(carried):
                problems.append(f"{expr}: {name} has no label {sorted(labels - set(carried))}")
    return problems


def _assert_grafana_loaded(stack: ComposeStack, uids: set[str]) -> None:
    secret = stack.project.config()["secrets"]["grafana_admin_password"]["file"]
    auth = ("admin", Path(secret).read_text().strip())
    url = f"http://127.0.0.1:{stack.ports['DEV_GRAFANA_PORT']}/api/search"
    loaded: set[str] = set()

    def provisioned() -> bool:
        found = httpx.get(url, params={"type": "dash-db"}, auth=auth, timeout=5).json()
        loaded.update(d["uid"] for d in found)
        return loaded >= uids

    wait_until(provisioned, seconds=60, what=f"Grafana loading {sorted(uids)}", interval=2)


@pytest.mark.criterion("the database backup script works")
def test_backup_script_works(healthy: ComposeStack, flow: Flow, tmp_path: Path) -> None:
    target = ["--project", healthy.project.name, "--json"]
    made = _script("backup.py", "--dest", str(tmp_path), *target)
    backup = Path(made["path"])
    assert made["tables"]["snippets"] >= 1 and made["objects"] >= 1, made
    manifest = json.loads((backup / "manifest.json").read_text())
    assert "postgres.dump" in manifest["files"]
    for name, entry in manifest["files"].items():
        data = (backup / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])
    with healthy.client() as http:
        later = http.post(
            "/api/v1/snippets",
            json={"title": "after-backup.py", "language": "python", "content": "x = 1\n"},
        )
        assert later.status_code == 202, later.text

    restored = _script(
        "restore.py", "--backup", str(backup), "--yes", "--backups-dir", str(tmp_path), *target
    )

    assert restored["ok"], restored
    assert all(check["ok"] for check in restored["checks"]), restored["checks"]
    with healthy.client() as http:
        wait_until(
            lambda: http.get("/health/ready").status_code == 200,
            seconds=60,
            what="backend ready after the restore",
        )
        assert http.get(f"/api/v1/snippets/{flow.snippet_id}/content").text == FIB
        assert http.get(f"/api/v1/snippets/{later.json()['id']}").status_code == 404


def _script(name: str, *args: str) -> dict[str, Any]:
    """Run scripts/<name> as an operator would; its --json result line."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stderr[-3000:]}"
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    result: dict[str, Any] = next(e for e in events if e["event"] == "result")
    return result


@pytest.mark.criterion("the deployment documentation is complete and clear")
def test_deployment_docs_complete() -> None:
    deployment = docs.DOCS / "deployment.md"
    assert deployment.is_file(), "docs/deployment.md is missing"
    problems = docs.problems()
    text = deployment.read_text()
    compose = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
    problems += [
        f"docs/deployment.md: service {s} is never named"
        for s in compose["services"]
        if not re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", text)
    ]
    problems += [f"invoke task {t} is documented nowhere" for t in docs.undocumented_tasks()]
    readme = [
        docs.link_target(link.doc, link.text)
        for link in docs.links()
        if link.doc.name == "README.md"
    ]
    if deployment.resolve() not in readme:
        problems.append("README.md does not link to docs/deployment.md")
    assert not problems, "\n".join(problems)


@pytest.mark.criterion("production configuration is separate from development configuration")
def test_production_config_separate_from_development(docker_host: None, tmp_path: Path) -> None:
    ops_secrets.generate("dev")
    ops_secrets.generate("prod", root=tmp_path)
    env_file = tmp_path / ".env.prod"
    shutil.copy(COMPOSE_DIR / ".env.prod.example", env_file)
    with env_file.open("a") as settings:
        settings.write("QUESTION_RETENTION_DAYS=123\n")  # a value only this env file has
    prod_project = Project(
        "prod",
        profiles=("observability",),
        project_name="coach-acceptance-prod",
        overrides=(("SECRETS_DIR", str(tmp_path / "prod")), ("PROD_ENV_FILE", str(env_file))),
    )
    dev_project = Project("dev", profiles=("observability",), project_name="coach-acceptance-dev")
    dev_files = [f.name for f in dev_project.files()]
    assert dev_files == ["docker-compose.yml", "docker-compose.override.yml"]
    prod_files = [f.name for f in prod_project.files()]
    assert prod_files == ["docker-compose.yml", "docker-compose.prod.yml"]
    prod, dev = prod_project.config(), dev_project.config()
    # The same services in both, and production's own: its scheduled backups.
    assert set(prod["services"]) == set(dev["services"]) | {"backup"}, "the same services"

    for name in APP_ROLES:
        prod_env, dev_env = (
            prod["services"][name]["environment"],
            dev["services"][name]["environment"],
        )
        assert (prod_env["ENVIRONMENT"], dev_env["ENVIRONMENT"]) == ("production", "development")
        assert prod_env["QUESTION_RETENTION_DAYS"] == "123", "prod reads .env.prod"
        assert "QUESTION_RETENTION_DAYS" not in dev_env, "dev reads no .env.prod"
        plaintext = [
            k for k in prod_env if re.search(r"PASSWORD|SECRET|API_KEY", k) and "_FILE" not in k
        ]
        assert not plaintext, f"prod {name}: secrets in the environment: {plaintext}"
    for name, service in prod["services"].items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(limits), f"prod {name}: no limits"
        assert service.get("restart") in {"unless-stopped", "no"}, f"prod {name}: restart"
        assert service["logging"]["options"]["max-size"], f"prod {name}: log rotation"
    backend = dev["services"]["backend"]
    assert "restart" not in backend and "logging" not in backend and "deploy" not in backend
    published = {name for name, s in prod["services"].items() if s.get("ports")}
    assert published == {"nginx"}, f"prod publishes {published}"
    dev_ports = [p for s in dev["services"].values() for p in s.get("ports", [])]
    assert len(dev_ports) > 1 and all(p["host_ip"] == "127.0.0.1" for p in dev_ports)
    assert _source_mounts(dev) and not _source_mounts(prod), "source mounted in dev only"
    # build_ca is the build's CA bundle, the same file for both by design.
    prod_secrets = {Path(s["file"]).parent for n, s in prod["secrets"].items() if n != "build_ca"}
    dev_secrets = {Path(s["file"]).parent for n, s in dev["secrets"].items() if n != "build_ca"}
    assert prod_secrets == {tmp_path / "prod"} and not prod_secrets & dev_secrets
    assert all(v.get("external") for v in prod["volumes"].values()), "down -v spares prod data"
    assert not any(v.get("external") for v in dev["volumes"].values())


def _source_mounts(config: dict[str, Any]) -> list[str]:
    return [
        v["source"]
        for s in config["services"].values()
        for v in s.get("volumes", [])
        if v["type"] == "bind" and Path(v["source"]).name in {"coach", "backend", "worker"}
    ]
