"""The acceptance gate of TASK-018: one test per acceptance criterion of the task card, against
one real stack (`invoke up`'s own code, observability profile, a compose project and ports of
its own), brought up once for the session and removed with its volumes afterwards.

Each test names its criterion with `@pytest.mark.criterion(...)`. The session ends with a table
criterion -> passed / skipped (naming the image that cannot be had here) / failed, which is
also written to .state/reports/acceptance.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import pytest

from ops.console import table
from ops.reports import REPORTS
from ops.stack import roles
from tests.support.compose import ComposeStack, compose_stack
from tests.support.flow import wait_indexed
from tests.support.samples import FIB

REPORT_FILE = REPORTS / "acceptance.json"


# --- the stack and the user's flow --------------------------------------------------------


@pytest.fixture(scope="session")
def stack(docker_host: None) -> Iterator[ComposeStack]:
    """Up whatever the outcome: the compose-up criterion judges it; the others need `healthy`."""
    with compose_stack("coach-acceptance") as running:
        yield running


@pytest.fixture(scope="session")
def healthy(stack: ComposeStack) -> ComposeStack:
    if not stack.result.ok:
        pytest.fail(f"stack not healthy: {stack.failures()}")
    return stack


@dataclass(frozen=True)
class Flow:
    """One snippet uploaded through nginx and indexed by the worker, and one question on it."""

    upload: httpx.Response
    ask: httpx.Response

    @property
    def snippet_id(self) -> str:
        return str(self.upload.json()["id"])

    @property
    def task_id(self) -> str:
        return str(self.upload.json()["task_id"])


@pytest.fixture(scope="session")
def flow(healthy: ComposeStack) -> Flow:
    with healthy.client() as http:
        upload = http.post(
            "/api/v1/snippets",
            json={"title": "acceptance.py", "language": "python", "content": FIB},
        )
        assert upload.status_code == 202, upload.text
        sid = upload.json()["id"]
        wait_indexed(http, sid, seconds=60)
        ask = http.post(
            "/api/v1/coach/ask", json={"question": "fibonacci loop?", "snippet_id": sid}
        )
    assert ask.status_code == 200, ask.text
    return Flow(upload, ask)


def missing_images(stack: ComposeStack) -> dict[str, str]:
    """service -> pinned image, for every service left out because its image cannot be had."""
    return {
        service: str(r.pinned)
        for r in stack.result.resolved
        if not r.available
        for service in roles.fallbacks(stack.project.config()).get(r.var, ((), ""))[0]
    }


def unproven(what: str, missing: dict[str, str]) -> str | None:
    """The skip reason naming the images that kept `what` from being proven, if any."""
    by_image: dict[str, list[str]] = {}
    for service, image in missing.items():
        by_image.setdefault(image, []).append(service)
    if not by_image:
        return None
    parts = [f"{', '.join(s)} not started: image {i} unobtainable" for i, s in by_image.items()]
    return f"{what}: {'; '.join(parts)}"


# --- the criterion table --------------------------------------------------------------------


@dataclass
class Row:
    criterion: str
    test: str
    outcome: str = "not run"
    detail: str = ""
    seconds: float = 0.0


class CriteriaReport:
    """Collects one row per criterion from the test reports; prints and writes the table."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marker = item.get_closest_marker("criterion")
            if marker is None:
                continue
            if isinstance(item, pytest.Function) and "docker_host" in item.fixturenames:
                item.add_marker(pytest.mark.docker)
            self.rows[item.nodeid] = Row(str(marker.args[0]), item.name)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.rows.pop(item.nodeid, None)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = self.rows.get(report.nodeid)
        if row is None:
            return
        row.seconds += report.duration
        if report.failed and row.outcome != "failed":
            row.outcome, row.detail = "failed", _failure(report)
        elif report.skipped and row.outcome == "not run":
            row.outcome, row.detail = "skipped", _skip_reason(report)
        elif report.when == "call" and report.passed and row.outcome == "not run":
            row.outcome = "passed"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        rows = list(self.rows.values())
        terminalreporter.section("TASK-018 acceptance criteria")
        terminalreporter.write_line(
            table(
                ["criterion", "result", "seconds", "detail"],
                [(r.criterion, r.outcome, f"{r.seconds:.1f}", r.detail) for r in rows],
            )
        )
        REPORT_FILE.parent.mkdir(parents=True, exist_ok=True)
        totals = {o: sum(r.outcome == o for r in rows) for o in ("passed", "skipped", "failed")}
        REPORT_FILE.write_text(
            json.dumps({"criteria": [asdict(r) for r in rows], "totals": totals}, indent=2) + "\n"
        )
        terminalreporter.write_line(f"written to {REPORT_FILE}")


def _failure(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = str(crash.message) if crash is not None else str(report.longrepr)
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    return f"{report.when}: {first}"[:300]


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "criterion(text): the task card's acceptance criterion")
    config.pluginmanager.register(CriteriaReport(), "acceptance-criteria")
