"""Observability configuration that must hold with several replicas, read from the files: every
backend and worker replica discovered (compose and Swarm alike), dashboards that query through
their data source variable, filter by instance/route/model, aggregate over instances and mark
deploys. tests/smoke/test_observability_live.py runs the same expressions on a live stack."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from ops.paths import INFRA
from ops.stack.nginx import load_compose_file
from tests.support import dashboards

PROMETHEUS = INFRA / "observability" / "prometheus"
APP_JOBS = {
    "backend": ("backend", 8000, "backend"),
    "worker": ("celery-worker", 9808, "celery-worker"),
}
DATASOURCE = "${datasource}"
# Which filters a dashboard offers, and the app metrics each one applies to there.
FILTERS: dict[str, dict[str, tuple[str, ...]]] = {
    "service-overview": {
        "instance": ("coach_http_requests_total", "coach_http_request_duration_seconds_bucket"),
        "route": ("coach_http_requests_total", "coach_http_request_duration_seconds_bucket"),
    },
    "celery": {"instance": ("coach_celery_tasks_total", "coach_celery_queue_messages")},
    "llm-agents": {
        "instance": ("coach_llm_requests_total", "coach_llm_up", "coach_llm_tokens_total"),
        "model": ("coach_llm_requests_total", "coach_llm_request_duration_seconds_bucket"),
    },
}
_AGGREGATION = re.compile(r"\b(sum|max|min|count|avg)\s*(by\s*\(([^)]*)\)\s*)?\(")


load_compose = load_compose_file  # the name these tests read as


def _prometheus_config(name: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS / name).read_text())
    return config


def _jobs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


@pytest.mark.parametrize(
    ("config", "prefix"), [("prometheus.yml", ""), ("prometheus.swarm.yml", "tasks.")]
)
def test_every_app_replica_is_a_target_of_its_own(config: str, prefix: str) -> None:
    jobs = _jobs(_prometheus_config(config))
    for job, (service, port, label) in APP_JOBS.items():
        scrape = jobs[job]
        assert "static_configs" not in scrape, f"{job}: one static name reaches one replica"
        assert scrape["dns_sd_configs"] == [
            {"names": [prefix + service], "type": "A", "port": port, "refresh_interval": "15s"}
        ]
        # instance stays the default (<address>:<port>, one per replica); service as before.
        assert scrape["relabel_configs"] == [{"target_label": "service", "replacement": label}]


def test_the_swarm_config_is_the_compose_one_but_for_the_task_names() -> None:
    compose, swarm = (
        _prometheus_config("prometheus.yml"),
        _prometheus_config("prometheus.swarm.yml"),
    )
    for job in APP_JOBS:
        for discovery in _jobs(swarm)[job]["dns_sd_configs"]:
            discovery["names"] = [n.removeprefix("tasks.") for n in discovery["names"]]
    assert swarm == compose, "change prometheus.yml and prometheus.swarm.yml together"


def test_swarm_runs_prometheus_on_its_config_with_the_same_flags() -> None:
    base = load_compose("docker-compose.yml")["services"]["prometheus"]["command"]
    swarm = load_compose("docker-compose.swarm.yml")["services"]["prometheus"]["command"]
    assert swarm[0] == "--config.file=/etc/prometheus/prometheus.swarm.yml"
    assert base[0] == "--config.file=/etc/prometheus/prometheus.yml"
    assert swarm[1:] == base[1:], "the other flags of docker-compose.yml, repeated"


def _datasources(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
        return found + [d for k, v in node.items() if k != "datasource" for d in _datasources(v)]
    if isinstance(node, list):
        return [d for v in node for d in _datasources(v)]
    return []


@pytest.mark.parametrize("path", dashboards.paths(), ids=lambda p: p.stem)
def test_every_query_goes_through_the_datasource_variable(path: Any) -> None:
    dashboard = dashboards.load(path)
    variable = dashboards.variables(dashboard)["datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    sources = _datasources([dashboard["panels"], dashboard["annotations"], dashboard["templating"]])
    assert sources and all(s == {"type": "prometheus", "uid": DATASOURCE} for s in sources)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filters_are_offered_with_all_and_applied(name: str) -> None:
    dashboard = dashboards.load(dashboards.DIRECTORY / f"{name}.json")
    defined = dashboards.variables(dashboard)
    expressions = [e.expr for e in dashboards.panel_expressions() if e.dashboard == name]
    for variable, metric_names in FILTERS[name].items():
        spec = defined[variable]
        assert spec["type"] == "query" and spec["includeAll"] and spec["multi"], variable
        assert spec["allValue"] == ".*" and spec["current"]["value"] == ["$__all"], variable
        selector, label = dashboards.label_values(spec)
        assert label == variable
        if variable == "instance":
            assert selector.startswith("up{job"), "instances: the job's scrape targets"
        for metric in metric_names:
            selectors = [m.group(1) or "" for e in expressions for m in _selectors(metric, e)]
            assert selectors, f"{name}: no panel shows {metric}"
            assert all(f'{variable}=~"${variable}"' in s for s in selectors), (metric, variable)
    for expression in dashboards.panel_expressions() + dashboards.annotation_expressions():
        if expression.dashboard == name:
            dashboards.substitute(expression.expr, dashboard)  # every $variable is defined


def _selectors(metric: str, expr: str) -> list[re.Match[str]]:
    return list(re.finditer(rf"(?<![\w:]){re.escape(metric)}(?![\w:])(\{{[^}}]*\}})?", expr))


def test_panels_aggregate_over_instances_unless_they_show_each_one() -> None:
    """A panel without {{instance}} in its legend shows one value per series it is grouped by:
    its expression must aggregate (sum/max/min/...) and not group by instance."""
    for path in dashboards.paths():
        for panel in dashboards.panels(dashboards.load(path)["panels"]):
            for target in panel.get("targets", []):
                expr, legend = target["expr"], target.get("legendFormat", "")
                if "{{instance}}" in legend:
                    continue
                groups = _AGGREGATION.findall(expr)
                assert groups, f"{path.stem}/{panel['title']}: not aggregated: {expr}"
                assert all("instance" not in g[2] for g in groups), (path.stem, panel["title"])


def test_every_dashboard_marks_deploys_with_the_tested_expression() -> None:
    tests = yaml.safe_load((PROMETHEUS / "tests" / "dashboards_test.yml").read_text())
    tested = {t["expr"] for case in tests["tests"] for t in case.get("promql_expr_test", [])}
    for path in dashboards.paths():
        [deploys] = [
            a
            for a in dashboards.prometheus_annotations(dashboards.load(path))
            if a["name"] == "Deploys"
        ]
        assert deploys["expr"] in tested, f"{path.stem}: the Deploys annotation is not unit-tested"
        assert "coach_build_info" in deploys["expr"] and "revision" in deploys["expr"]
        assert "{{revision}}" in deploys["titleFormat"] and deploys["enable"]


def test_substitution_puts_every_variable_on_all() -> None:
    dashboard = {
        "uid": "x",
        "templating": {"list": [{"name": "instance", "allValue": ".*"}, {"name": "route"}]},
    }
    expr = 'sum(rate(m{instance=~"$instance", route=~"${route}"}[$__rate_interval]))'
    assert dashboards.substitute(expr, dashboard) == 'sum(rate(m{instance=~".*", route=~".*"}[2m]))'
    with pytest.raises(KeyError, match="model"):
        dashboards.substitute('m{model=~"$model"}', dashboard)
