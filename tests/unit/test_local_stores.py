"""Production never runs on local stores silently: `up --prod` refuses where the Qdrant or MinIO
image cannot be had unless --allow-local-stores, and then /health, coach_degraded and the alert
AppDegradedLocalStores say so. Development keeps falling back with a note."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from coach.settings import get_settings
from ops.cli.stack import verdict
from ops.images.catalog import ImageRef
from ops.images.resolve import Resolved
from ops.stack.fallback import (
    DEGRADED_VAR,
    LocalStoresRefused,
    degraded_stores,
    write_fallback,
)
from ops.stack.project import Project
from ops.stack.up import UpResult
from tests.support.embedded import keyed_client

# The labels of infra/compose/docker-compose.yml that the fallback reads.
CONFIG: dict[str, Any] = {
    "services": {
        "backend": {
            "labels": {"coach.role": "writer", "coach.app": "true"},
            "depends_on": {"qdrant": {}, "minio": {}},
        },
        "celery-worker": {"labels": {"coach.role": "writer", "coach.app": "true"}},
        "qdrant": {
            "labels": {
                "coach.role": "data",
                "coach.store": "vectors",
                "coach.fallback": "local-stores",
                "coach.image-var": "QDRANT_IMAGE",
            }
        },
        "minio": {
            "labels": {
                "coach.role": "data",
                "coach.store": "objects",
                "coach.fallback": "local-stores",
                "coach.image-var": "MINIO_IMAGE",
            }
        },
        "minio-init": {
            "labels": {
                "coach.role": "one-shot",
                "coach.fallback": "local-stores",
                "coach.image-var": "MINIO_IMAGE",
            }
        },
    }
}
QDRANT = ImageRef.parse("docker.io/qdrant/qdrant:v1.13.0")
MINIO = ImageRef.parse("docker.io/minio/minio:RELEASE.2025-01-20T14-49-07Z")


def resolved(*missing: str) -> list[Resolved]:
    return [
        Resolved(var, ref, str(ref), "unavailable" if var in missing else "local", "not here")
        for var, ref in (("QDRANT_IMAGE", QDRANT), ("MINIO_IMAGE", MINIO))
    ]


@dataclass
class FakeProject:
    """What write_fallback reads of a Project, writing under a temporary directory."""

    env: str
    fallback_file: Path
    name: str = "coach-test"


def test_production_refuses_naming_each_service_and_image() -> None:
    with pytest.raises(LocalStoresRefused) as refused:
        degraded_stores(
            "prod", resolved("QDRANT_IMAGE", "MINIO_IMAGE"), CONFIG, allow_local_stores=False
        )
    message = str(refused.value)
    for service, ref in (("qdrant", QDRANT), ("minio", MINIO), ("minio-init", MINIO)):
        assert f"{service} (" in message and str(ref) in message, service
    assert "--allow-local-stores" in (refused.value.hint or "")


def test_production_with_every_image_or_the_flag_starts() -> None:
    assert degraded_stores("prod", resolved(), CONFIG, allow_local_stores=False) == []
    allowed = degraded_stores("prod", resolved("QDRANT_IMAGE"), CONFIG, allow_local_stores=True)
    assert allowed == ["vectors"]


def test_allowed_production_tells_the_app_it_runs_degraded(tmp_path: Path) -> None:
    missing = resolved("QDRANT_IMAGE", "MINIO_IMAGE")
    degraded = degraded_stores("prod", missing, CONFIG, allow_local_stores=True)
    project = cast(Project, FakeProject("prod", tmp_path / "fallback.yml"))
    left_out, notes = write_fallback(project, missing, CONFIG, degraded=degraded)
    override = json.loads(
        project.fallback_file.read_text().split("\n", 1)[1].replace("!override ", "")
    )
    for app in ("backend", "celery-worker"):
        env = override["services"][app]["environment"]
        assert env[DEGRADED_VAR] == "objects,vectors", app
        assert (env["QDRANT_URL"], env["S3_ENDPOINT_URL"]) == ("", ""), app
    assert sorted(left_out) == ["minio", "minio-init", "qdrant"]
    assert notes[-1] == "production degraded: local stores (objects, vectors), as allowed"


def test_development_falls_back_as_before_with_its_note(tmp_path: Path) -> None:
    missing = resolved("QDRANT_IMAGE")
    degraded = degraded_stores("dev", missing, CONFIG, allow_local_stores=False)
    assert degraded == []
    project = cast(Project, FakeProject("dev", tmp_path / "fallback.yml"))
    left_out, notes = write_fallback(project, missing, CONFIG, degraded=degraded)
    assert left_out == ["qdrant"]
    assert notes == [
        "QDRANT_IMAGE unavailable: qdrant left out; app uses Qdrant local mode on volume "
        "local-stores"
    ]
    assert DEGRADED_VAR not in project.fallback_file.read_text()


def test_health_says_degraded_by_local_stores_and_the_gauge_says_so(
    embedded_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.app import create_app  # noqa: PLC0415 - after the environment is set

    monkeypatch.setenv(DEGRADED_VAR, "vectors,objects")
    get_settings.cache_clear()
    with keyed_client(create_app(get_settings()), raise_server_exceptions=False) as client:
        inside = client.get("/health")
        outside = client.get("/health", headers={"X-Forwarded-For": "203.0.113.9"})
        ready = client.get("/health/ready")
        scraped = client.get("/metrics").text
    assert inside.status_code == 200, "degraded still serves"
    assert inside.json()["status"] == "degraded"
    assert inside.json()["reason"] == "local stores: vectors, objects"
    assert all(c["status"] != "error" for c in inside.json()["checks"].values())
    assert ready.json()["status"] == "degraded"
    assert outside.json()["status"] == "degraded"
    assert "reason" not in outside.json(), "outside callers see statuses only"
    assert 'coach_degraded{reason="local_stores"} 1.0' in scraped


def test_health_without_the_setting_is_healthy_and_the_gauge_zero(client: TestClient) -> None:
    body = client.get("/health").json()
    assert (body["status"], body["reason"]) == ("healthy", None)
    assert 'coach_degraded{reason="local_stores"} 0.0' in client.get("/metrics").text


def test_an_unknown_setting_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEGRADED_VAR, "vectors;rm -rf")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="stores_degraded"):
        get_settings()
    get_settings.cache_clear()


def test_the_status_line_after_up_says_degraded(tmp_path: Path) -> None:
    project = cast(Project, FakeProject("prod", tmp_path / "fallback.yml"))
    healthy = UpResult(project, [], [], [], 1.0)
    degraded = UpResult(project, [], ["qdrant"], [], 1.0, degraded=["vectors"])
    assert verdict(healthy) == "all services healthy"
    assert verdict(degraded) == "all services healthy; degraded: local stores (vectors)"
