"""The production stack backs itself up: its `backup` service, with the schedule shortened by a
setting (COACH_BACKUP_INTERVAL_SECONDS in .env.prod), writes complete backups into the host's
backups directory with nobody calling `invoke backup`, again and again, and Prometheus scrapes
the last success's timestamp that BackupTooOld watches."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.data.backup import complete_backups, created_at
from ops.data.manifest import MANIFEST
from tests.support.processes import wait_until
from tests.support.prod import ProdStack, prod_stack

INTERVAL_S = 20
FIB = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"


@pytest.fixture(scope="module")
def prod(docker_host: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProdStack]:
    root = tmp_path_factory.mktemp("backup-service")
    env = {"COACH_BACKUP_INTERVAL_SECONDS": str(INTERVAL_S)}
    # build: the backup service's image (target ops) as `invoke up --prod` builds it.
    with prod_stack(
        "coach-smoke-backupsvc", root, env, profiles=("observability",), build=True
    ) as stack:
        if not stack.result.ok:
            pytest.fail(f"production stack not healthy: {stack.result.failed}")
        yield stack


def backups_dir(prod: ProdStack) -> Path:
    return Path(dict(prod.project.overrides)["BACKUPS_DIR"])


def manifest(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((path / MANIFEST).read_text())
    return data


def prometheus_query(prod: ProdStack, query: str) -> list[dict[str, object]]:
    """Prometheus' HTTP API from inside the stack (production publishes no port of it)."""
    url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": query})
    done = prod.project.run(
        "exec", "-T", "prometheus", "wget", "-qO-", url, capture=True, check=False, quiet=True
    )
    if done.returncode:
        return []
    result: list[dict[str, object]] = json.loads(done.stdout)["data"]["result"]
    return result


def test_scheduled_backups_land_in_the_host_directory_and_reach_prometheus(
    prod: ProdStack,
) -> None:
    key = prod.create_key(scope="write")
    with prod.client(key) as https:
        accepted = https.post(
            "/api/v1/snippets", json={"title": "fib.py", "language": "python", "content": FIB}
        )
        assert accepted.status_code == 202, accepted.text
        snippet = accepted.json()["id"]
        wait_until(
            lambda: https.get(f"/api/v1/snippets/{snippet}").json()["status"] == "indexed",
            seconds=90,
            what="snippet indexed",
            interval=1,
        )
    root = backups_dir(prod)
    found: dict[Path, dict[str, object]] = {}

    def with_the_snippet() -> bool:
        for path in complete_backups(root):
            try:
                data = manifest(path)
            except FileNotFoundError:  # pruned between the listing and the read
                continue
            tables, objects = data["tables"], data["objects"]
            assert isinstance(tables, dict) and isinstance(objects, dict)
            if tables["snippets"] >= 1 and objects["count"] >= 1:
                found[path] = data
                return True
        return False

    # Nobody calls backup: the service's schedule alone makes them.
    wait_until(
        with_the_snippet,
        seconds=6 * INTERVAL_S + 60,
        what="a scheduled backup holding the snippet",
        interval=1,
    )
    [(first, data)] = found.items()
    tools = data["tools"]
    assert isinstance(tools, dict) and str(tools["pg_dump"]).startswith("pg_dump (PostgreSQL) 17")
    wait_until(
        lambda: any(p.name > first.name for p in complete_backups(root)),
        seconds=6 * INTERVAL_S + 60,
        what="the next scheduled backup (the schedule repeats)",
        interval=1,
    )
    # Retention by calendar (7 daily, 4 weekly): of one day's backups, only the newest stays.
    wait_until(
        lambda: not first.exists(),
        seconds=6 * INTERVAL_S + 60,
        what="the earlier backup of the same day pruned",
        interval=1,
    )

    series: dict[str, float] = {}

    def scraped() -> bool:
        for name in (
            "coach_backup_last_success_timestamp_seconds",
            "coach_backup_last_size_bytes",
            "coach_backup_last_duration_seconds",
        ):
            found = prometheus_query(prod, name)
            if not found:
                return False
            value = found[0]["value"]
            assert isinstance(value, list)
            series[name] = float(value[1])
        return True

    wait_until(scraped, seconds=120, what="the backup metrics in Prometheus", interval=3)
    # A backup's own time (its name's, whole seconds), at or after the one holding the snippet
    # (scrapes lag the 20 s schedule, whose older backups retention has pruned by now).
    stamp = series["coach_backup_last_success_timestamp_seconds"]
    assert created_at(first).timestamp() <= stamp <= time.time(), (series, first.name)
    assert stamp == int(stamp)
    assert series["coach_backup_last_size_bytes"] > 0
    failures = prometheus_query(prod, "coach_backup_failures_total")
    assert failures and float(failures[0]["value"][1]) == 0  # type: ignore[index]
    print(
        f"\nscheduled backups: {len(complete_backups(root))} in {root.name}; last one "
        f"{series['coach_backup_last_size_bytes'] / 1e3:.1f} kB in "
        f"{series['coach_backup_last_duration_seconds']:.2f} s (interval {INTERVAL_S} s)"
    )
