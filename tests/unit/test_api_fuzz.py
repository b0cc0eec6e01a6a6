"""Schemathesis over the OpenAPI document: whatever a client with a key sends, the API never
answers 5xx, and every response matches the documented schema; without a key, every operation
answers 401."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

# Module-level, as schemathesis requires: an embedded app in a directory of its own, whose
# start registers the key written here (tenant "dev", scope write: every operation).
_DATA = Path(tempfile.mkdtemp(prefix="coach-fuzz-"))
for _key in ("POSTGRES_HOST", "REDIS_HOST", "QDRANT_URL", "S3_ENDPOINT_URL", "LLM_BASE_URL"):
    os.environ.pop(_key, None)
os.environ["DATA_DIR"] = str(_DATA)

from backend.app import create_app  # noqa: E402
from coach.apikeys import DEV_KEY_FILE, ensure_key_file  # noqa: E402
from coach.settings import Settings  # noqa: E402
from tests.support.embedded import bearer, dev_key  # noqa: E402

ensure_key_file(_DATA / DEV_KEY_FILE)
KEY = bearer(dev_key(_DATA))

schema = schemathesis.openapi.from_asgi(
    "/api/v1/openapi.json",
    create_app(Settings(data_dir=_DATA)),
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@schema.parametrize()
@FUZZ
def test_no_server_errors(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(headers=KEY, checks=[not_a_server_error, response_schema_conformance])


@schema.include(path_regex="^/api/v1/").parametrize()
@settings(FUZZ, max_examples=10)
def test_every_operation_needs_a_key(case: schemathesis.Case[Any]) -> None:
    if case.method.upper() != case.operation.method.upper():
        return  # an undocumented method on the path: 405 whoever asks, no operation to guard
    for header in ("Authorization", "X-API-Key"):
        if case.headers is not None:  # in case the generator filled either in
            case.headers.pop(header, None)
    response = case.call()
    assert response.status_code == 401, (case.method, case.path, response.text)
    assert response.headers["www-authenticate"] == ["Bearer"]
    assert response.json()["error"] == "Unauthorized"
