"""Schemathesis over the OpenAPI document: whatever a client sends, the API never answers 5xx,
and every response matches the documented schema."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

# Module-level, as schemathesis requires: an embedded app in a directory of its own.
_DATA = tempfile.mkdtemp(prefix="coach-fuzz-")
for _key in ("POSTGRES_HOST", "REDIS_HOST", "QDRANT_URL", "S3_ENDPOINT_URL", "LLM_BASE_URL"):
    os.environ.pop(_key, None)
os.environ["DATA_DIR"] = _DATA

from backend.app import create_app  # noqa: E402
from coach.settings import Settings  # noqa: E402

schema = schemathesis.openapi.from_asgi(
    "/api/v1/openapi.json",
    create_app(Settings(data_dir=_DATA)),  # type: ignore[arg-type]
)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
