"""The embedded mode for tests and benchmarks: the variables that would leave it, or change
what it observes, unset."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.testclient import TestClient

from coach import apikeys
from coach.apikeys import DEV_KEY_FILE
from coach.runtime import Runtime

T = TypeVar("T")

EMBEDDED_ENV_KEYS = (
    "POSTGRES_HOST",
    "REDIS_HOST",
    "QDRANT_URL",
    "S3_ENDPOINT_URL",
    "LLM_BASE_URL",
    "EMBEDDING_PROVIDER",
    # Observability: nothing from the developer's shell may export spans or change the logs.
    "SERVICE_NAME",
    "OBSERVABILITY_ENABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_METRICS_EXPORTER",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
    "PROMETHEUS_MULTIPROC_DIR",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "LOG_LEVELS",
    "LOG_FILE",
    "API_KEY_BOOTSTRAP_FILE",  # embedded mode makes its own dev key in DATA_DIR
)


def dev_key(data_dir: Path) -> str:
    """The key the embedded app (or `python -m coach migrate`) made in DATA_DIR at start."""
    return (data_dir / DEV_KEY_FILE).read_text().strip()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def in_app(client: TestClient, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` on the started app's event loop (its database sessions live there)."""
    assert client.portal is not None, "the TestClient must be started (a `with` block)"
    return client.portal.call(work)


def create_key(client: TestClient, tenant: str, scope: str, name: str | None = None) -> str:
    """A new key, made in the running embedded app's database through coach.apikeys."""
    sessions = runtime_of(client).sessions
    _, key = in_app(
        client, partial(apikeys.create, sessions, tenant=tenant, scopes=[scope], name=name)
    )
    return key


@contextmanager
def keyed_client(app: FastAPI, **kwargs: Any) -> Iterator[TestClient]:
    """A started TestClient that sends the embedded dev key (tenant "dev", scope write)."""
    with TestClient(app, **kwargs) as client:
        client.headers.update(bearer(dev_key(runtime_of(client).settings.data_dir)))
        yield client
