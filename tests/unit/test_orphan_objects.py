"""Objects a refused upload left behind (stored, then no row) are removed by a beat job once
they are old; an upload in flight (its object young) and every object a row names are kept."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from celery.schedules import crontab
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import ValidationError

from coach.settings import Settings
from tests.support.embedded import bearer, in_app, runtime_of
from tests.unit.test_api_embedded import upload
from worker.schedule import beat_schedule
from worker.tasks import remove_orphan_objects

TWO_HOURS = 2 * 3600


def _object_file(data_dir: Path, key: str) -> Path:
    return data_dir / "objects" / key


def _age(data_dir: Path, key: str, seconds: float) -> None:
    """Back-date an object's last-modified time (a local object is a file: its mtime)."""
    then = time.time() - seconds
    os.utime(_object_file(data_dir, key), (then, then))


def _removed_total() -> float:
    return REGISTRY.get_sample_value("coach_orphan_objects_removed_total") or 0.0


def test_old_orphans_go_young_ones_and_any_with_a_row_stay(
    client: TestClient,
    embedded_env: Path,
    make_key: Callable[[str, str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    rt = runtime_of(client)
    mine = upload(client)
    theirs = client.post(
        "/api/v1/snippets",
        json={"title": "other", "language": "python", "content": "print('other tenant')\n"},
        headers=bearer(make_key("other", "write")),
    ).json()
    kept = [f"snippets/{mine['id']}", f"snippets/{theirs['id']}"]
    old_orphan, young_orphan = (f"snippets/{uuid.uuid4()}" for _ in range(2))
    for key in (old_orphan, young_orphan):
        in_app(client, partial(rt.objects.put, key, b"print('refused upload')\n"))
    for key in (*kept, old_orphan):
        _age(embedded_env, key, TWO_HOURS)
    before = _removed_total()
    capsys.readouterr()

    result = remove_orphan_objects()

    assert result == {"removed": 1, "old": 3, "scanned": 4}
    assert not _object_file(embedded_env, old_orphan).exists()
    assert _object_file(embedded_env, young_orphan).exists()
    content = client.get(f"/api/v1/snippets/{mine['id']}/content")
    assert content.status_code == 200 and "fib" in content.text
    assert all(_object_file(embedded_env, key).exists() for key in kept)
    assert _removed_total() == before + 1
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]
    line = next(e for e in logs if e["event"] == "orphan objects removed")
    assert (line["removed"], line["old"], line["scanned"]) == (1, 3, 4)

    assert remove_orphan_objects()["removed"] == 0, "a second sweep finds nothing more"


def test_nothing_younger_than_the_minimum_age_is_removed(
    client: TestClient, embedded_env: Path
) -> None:
    rt = runtime_of(client)
    orphan = f"snippets/{uuid.uuid4()}"
    in_app(client, partial(rt.objects.put, orphan, b"x = 1\n"))
    _age(embedded_env, orphan, 3000)  # under the default hour

    assert remove_orphan_objects()["removed"] == 0
    assert _object_file(embedded_env, orphan).exists()
    assert remove_orphan_objects(min_age_s=2000)["removed"] == 1


def test_the_listing_carries_last_modified_times(client: TestClient, embedded_env: Path) -> None:
    rt = runtime_of(client)
    in_app(client, partial(rt.objects.put, "snippets/a", b"a\n"))
    in_app(client, partial(rt.objects.put, "elsewhere/b", b"b\n"))
    _age(embedded_env, "snippets/a", TWO_HOURS)

    [item] = in_app(client, partial(rt.objects.listing, "snippets/"))
    assert (item.key, item.size) == ("snippets/a", 2)
    assert abs(time.time() - TWO_HOURS - item.last_modified.timestamp()) < 5


def test_the_beat_schedule_runs_the_sweep_at_the_configured_interval() -> None:
    entry = beat_schedule(Settings(orphan_object_sweep_hours=6))["remove-orphan-objects"]
    assert entry["task"] == "coach.remove_orphan_objects"
    assert isinstance(entry["schedule"], crontab)
    assert entry["schedule"].hour == {0, 6, 12, 18}
    assert 0 < entry["options"]["expires"] < 6 * 3600, "a run expires before the next one"


@pytest.mark.parametrize("age", [0, 299])
def test_a_minimum_age_that_could_catch_an_upload_in_flight_is_refused(age: int) -> None:
    with pytest.raises(ValidationError, match="orphan_object_min_age"):
        Settings(orphan_object_min_age=age)
