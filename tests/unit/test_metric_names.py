"""The app's metric names follow Prometheus' naming guide (one `coach_` prefix, the unit in the
name, `_total` on counters), and nothing in the repository still names one the app dropped."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics import MetricWrapperBase

import backend.app  # noqa: F401 - registers whatever the backend defines
import worker.tasks  # noqa: F401 - and the worker (its signals import worker.observability)
from coach import metrics
from tests.support.processes import ROOT
from worker import observability

# Each old name and the name it became (one line each, so that a grep for the old names which
# skips lines naming `coach_` passes over this table).
RENAMED = {
    "http_requests_total": "coach_http_requests_total",
    "http_request_duration_seconds": "coach_http_request_duration_seconds",
    "snippets_ingested_total": "coach_snippets_ingested_total",
    "snippets_indexed_total": "coach_snippets_indexed_total",
    "snippets_failed_total": "coach_snippets_failed_total",
    "llm_requests_total": "coach_llm_requests_total",
    "llm_request_duration_seconds": "coach_llm_request_duration_seconds",
    "llm_tokens_total": "coach_llm_tokens_total",
    "llm_up": "coach_llm_up",
    "celery_tasks_total": "coach_celery_tasks_total",
    "celery_task_duration_seconds": "coach_celery_task_duration_seconds",
    "celery_queue_length": "coach_celery_queue_messages",  # celery-exporter's name: never ours
}
# An old name on its own: not the tail of a longer name (nginx_http_requests_total is the
# nginx exporter's, coach_llm_up is the new name), a histogram's _bucket/_count/_sum allowed.
OLD = re.compile(
    r"(?<![A-Za-z0-9_])(" + "|".join(RENAMED) + r")(?:_bucket|_count|_sum)?(?![A-Za-z0-9_])"
)
UNITS = ("_seconds", "_bytes")  # the base units the app measures in
# Where metric names are consumed: rules and their tests, dashboards, code, tests, docs.
CONSUMERS = (
    "infra/observability/**/*.yml",
    "infra/observability/**/*.json",
    "coach/**/*.py",
    "backend/**/*.py",
    "worker/**/*.py",
    "ops/**/*.py",
    "tests/**/*.py",
    "docs/**/*.md",
    "*.md",
)


def _default_collector_names() -> set[str]:
    """What prometheus_client itself registers (process_*, python_*): not the app's."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return {family.name for family in registry.collect()}


def _app_families() -> dict[str, str]:
    """family name -> type, for every metric the app registers or serves."""
    wrappers = [
        value
        for module in (metrics, observability)
        for value in vars(module).values()
        if isinstance(value, MetricWrapperBase)
    ]
    assert len(wrappers) >= 14, "the app's metric objects were not found"
    families = {f.name: f.type for w in wrappers for f in w.describe()}
    defaults = _default_collector_names()
    families |= {f.name: f.type for f in REGISTRY.collect() if f.name not in defaults}

    class FakeRedis:
        def llen(self, name: str) -> int:
            return 0

    queue = observability.QueueLengthCollector(FakeRedis(), ["coach"])  # type: ignore[arg-type]
    families |= {f.name: f.type for f in queue.collect()}
    return families


def test_every_app_metric_has_the_coach_prefix_a_unit_and_counters_total() -> None:
    families = _app_families()
    assert set(RENAMED.values()) <= {
        name + ("_total" if kind == "counter" else "") for name, kind in families.items()
    }
    assert [name for name in families if not name.startswith("coach_")] == []
    # A counter's family has no _total: prometheus_client adds it to every sample it serves.
    # A gauge must not look like a counter (rate() over it would be nonsense).
    assert [n for n, kind in families.items() if kind == "gauge" and n.endswith("_total")] == []
    histograms = [name for name, kind in families.items() if kind == "histogram"]
    assert histograms and [h for h in histograms if not h.endswith(UNITS)] == []


def _consumer_files() -> list[Path]:
    found = {p for pattern in CONSUMERS for p in ROOT.glob(pattern) if p.is_file()}
    return sorted(p for p in found if p != Path(__file__) and ".venv" not in p.parts)


def test_no_rule_dashboard_test_or_doc_names_an_old_metric() -> None:
    files = _consumer_files()
    assert any(p.suffix == ".json" for p in files) and any(p.name == "alerts.yml" for p in files)
    stale = [
        f"{path.relative_to(ROOT)}:{number}: {match.group(0)} is now {RENAMED[match.group(1)]}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for match in OLD.finditer(line)
    ]
    assert stale == []


def test_the_old_name_check_finds_old_names_and_only_them() -> None:
    for old, new in RENAMED.items():
        assert OLD.findall(f'rate({old}{{job="x"}}[5m]) / {old}_bucket') == [old, old]
        assert OLD.findall(f"{new} nginx_{old} test_sets_{old} {old}s") == []
