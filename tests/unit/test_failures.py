"""What clients see when something fails: a dependency out of reach is a 503 with Retry-After,
a value the database refuses a 4xx, a bug a 500 — each in the one error shape, and never the
exception's text. And what the worker does with a message that keeps killing it."""

from __future__ import annotations

import errno
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, OperationalError

from coach import failures, health
from coach.errors import Conflict, InternalError, InvalidInput, Unavailable
from coach.llm import LLMError
from coach.models import Question
from tests.support.processes import free_port
from tests.support.samples import FIB
from tests.unit.test_api_embedded import assert_error, state, upload

SECRET = "postgres://coach:hunter2@10.0.0.7/coach"  # what no client may read


def questions(client: TestClient) -> int:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]

    async def count() -> int:
        async with runtime.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(Question)) or 0)

    return int(client.portal.call(count))  # type: ignore[union-attr]


def database_error(sqlstate: str) -> DBAPIError:
    """What SQLAlchemy raises over asyncpg: the driver's error (with its SQLSTATE) wrapped."""
    orig = asyncpg.PostgresError.get_message_class_for_sqlstate(sqlstate)(f"{SECRET} refused")
    try:
        raise DBAPIError("INSERT INTO questions ...", {"q": SECRET}, orig) from orig
    except DBAPIError as exc:
        return exc


async def unresolvable_database(*_: Any, **__: Any) -> None:
    """asyncpg connecting to a compose service whose name stopped resolving."""
    await asyncpg.connect(host="postgres.invalid", port=5432, user="coach", timeout=2)


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def gaierror(*_: Any, **__: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", gaierror)


# The classification itself, on the errors the drivers raise.


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("22021", InvalidInput),  # NUL in text: invalid byte sequence for encoding "UTF8"
        ("22001", InvalidInput),  # string too long
        ("23505", Conflict),  # unique violation
        ("08006", Unavailable),  # connection failure
        ("57P01", Unavailable),  # admin shutdown: PostgreSQL restarting
        ("53300", Unavailable),  # too many connections
        ("40001", Unavailable),  # serialization failure
        ("42P01", InternalError),  # undefined table: a bug, not the client's
    ],
)
def test_database_errors_are_classified_by_sqlstate(sqlstate: str, expected: type) -> None:
    error = failures.as_coach_error(database_error(sqlstate))
    assert type(error) is expected
    assert SECRET not in error.message and "hunter2" not in error.message
    if expected is Unavailable:
        assert error.message == "database is unavailable; retry shortly"
        assert error.headers == {"Retry-After": "5"}


async def test_connection_failures_name_the_dependency_only(no_dns: None) -> None:
    with pytest.raises(socket.gaierror) as unresolved:
        await unresolvable_database()
    with pytest.raises(OSError) as refused:  # a port where nothing listens
        await asyncpg.connect(host="127.0.0.1", port=free_port(), user="coach", timeout=2)
    for raised in (unresolved.value, refused.value):
        error = failures.as_coach_error(raised)
        assert isinstance(error, Unavailable), raised
        assert error.message == "database is unavailable; retry shortly"
    reset = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    assert isinstance(failures.as_coach_error(reset), Unavailable)
    invalidated = OperationalError("SELECT 1", None, reset)
    assert isinstance(failures.as_coach_error(invalidated), Unavailable)
    assert failures.dependency(invalidated) == "database"


def test_other_exceptions_are_internal_errors_without_their_text() -> None:
    for exc in (RuntimeError(SECRET), KeyError(SECRET), FileNotFoundError(2, SECRET)):
        error = failures.as_coach_error(exc)
        assert isinstance(error, InternalError) and error.status_code == 500
        assert error.message == "an unexpected error occurred"


# Through the API.


def test_database_refusing_a_value_is_422_not_503(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuses(*_: Any, **__: Any) -> Any:
        raise database_error("22021")

    monkeypatch.setattr("coach.snippets.page", refuses)
    response = client.get("/api/v1/snippets")
    assert_error(response, 422, "InvalidInput")
    assert "hunter2" not in response.text and "INSERT" not in response.text


def test_unresolvable_database_is_503_with_retry_after(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, no_dns: None
) -> None:
    monkeypatch.setattr("coach.snippets.page", unresolvable_database)
    response = client.get("/api/v1/snippets")
    assert_error(response, 503, "Unavailable")
    assert response.json()["detail"] == "database is unavailable; retry shortly"
    assert response.headers["retry-after"] == "5"
    assert "postgres.invalid" not in response.text


def test_a_bug_is_500_in_the_shape_without_its_text(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def bug(*_: Any, **__: Any) -> Any:
        raise RuntimeError(SECRET)

    monkeypatch.setattr("coach.snippets.page", bug)
    response = client.get("/api/v1/snippets")
    assert_error(response, 500, "InternalError")
    assert response.json()["detail"] == "an unexpected error occurred"
    assert "hunter2" not in response.text


@pytest.mark.parametrize(
    ("raised", "status", "error"),
    [
        (lambda: RuntimeError(SECRET), 500, "InternalError"),
        (lambda: database_error("22021"), 422, "InvalidInput"),
        (lambda: database_error("57P01"), 503, "Unavailable"),
        (lambda: ConnectionRefusedError(errno.ECONNREFUSED, SECRET), 503, "Unavailable"),
    ],
    ids=["bug", "data-error", "database-restarting", "refused"],
)
def test_what_fails_in_the_ask_task_comes_back_mapped(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    raised: Any,
    status: int,
    error: str,
) -> None:
    """The agent runs in the coach.ask task (eagerly here, as on a worker): whatever it raises
    reaches the client as a mapped status in the error shape, never as the exception itself."""
    upload(client)

    async def failing(*_: Any, **__: Any) -> Any:
        raise raised()

    monkeypatch.setattr("coach.agent.ask", failing)
    response = client.post("/api/v1/coach/ask", json={"question": "how is fib computed?"})
    assert_error(response, status, error)
    assert "hunter2" not in response.text and "10.0.0.7" not in response.text
    if status == 503:
        assert response.headers["retry-after"] == "5"


def test_unresolvable_database_in_the_ask_task_is_503(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, no_dns: None
) -> None:
    upload(client)
    monkeypatch.setattr("coach.agent.ask", unresolvable_database)
    response = client.post("/api/v1/coach/ask", json={"question": "how is fib computed?"})
    assert_error(response, 503, "Unavailable")
    assert response.json()["detail"] == "database is unavailable; retry shortly"


def test_control_characters_in_a_question_cost_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(client)
    before = questions(client)

    async def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("the LLM must not be called")

    monkeypatch.setattr("coach.llm.ExtractiveLLM.generate", never)
    for raw in (
        b'{"question": "why\\u0000"}',
        b'{"question": "why \\ud800"}',  # a lone surrogate: Python's JSON decoder accepts it
        b'{"question": "why\\u001b[2J"}',
    ):
        response = client.post(
            "/api/v1/coach/ask", content=raw, headers={"content-type": "application/json"}
        )
        assert_error(response, 422, "InvalidInput")
    assert questions(client) == before


def test_text_keeps_the_whitespace_it_is_made_of(client: TestClient) -> None:
    source = "def f():\r\n\treturn 1\r\n\f\nclass Façade:  # 中文 😀\n    pass\n"
    accepted = upload(client, title="Façade — 中文", content=source)
    assert client.get(f"/api/v1/snippets/{accepted['id']}/content").text == source
    answer = client.post("/api/v1/coach/ask", json={"question": "what does f\nreturn?\n\tnow"})
    assert answer.status_code == 200, answer.text


# Indexing failures and poison messages.


def test_a_failed_index_says_why_in_fixed_words(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def bug(*_: Any, **__: Any) -> Any:
        raise RuntimeError(SECRET)

    monkeypatch.setattr("coach.snippets.index", bug)
    accepted = upload(client)
    snippet = client.get(f"/api/v1/snippets/{accepted['id']}").json()
    task = client.get(f"/api/v1/tasks/{accepted['task_id']}").json()
    assert snippet["status"] == "failed"
    assert (
        snippet["error"]
        == "indexing failed: an unexpected error (the worker's log has the details)"
    )
    assert task["state"] == "FAILURE"
    assert task["error"].startswith("IndexingFailed: ")
    assert "hunter2" not in str(snippet) + str(task)


def test_a_corrupt_object_fails_indexing_with_its_reason(
    client: TestClient, embedded_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def corrupt(*_: Any, **__: Any) -> bytes:
        return b"caf\xe9"

    monkeypatch.setattr("coach.objects.ObjectStore.get_async", corrupt)
    accepted = upload(client)
    snippet = client.get(f"/api/v1/snippets/{accepted['id']}").json()
    assert (snippet["status"], snippet["error"]) == (
        "failed",
        "indexing failed: the stored object is not valid UTF-8",
    )


def test_indexing_gives_up_on_a_dependency_after_its_retries(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    async def down(*_: Any, **__: Any) -> Any:
        calls.append(1)
        refused = ConnectionRefusedError(errno.ECONNREFUSED, SECRET)
        raise OperationalError("SELECT", None, refused) from refused

    monkeypatch.setattr("coach.snippets.index", down)
    accepted = upload(client)  # eager: the retries run at once, one after the other
    snippet = client.get(f"/api/v1/snippets/{accepted['id']}").json()
    assert len(calls) == 9  # the first run and 8 retries
    assert (snippet["status"], snippet["error"]) == (
        "failed",
        "gave up after 8 retries: database unavailable",
    )


def test_the_delivery_past_the_limit_fails_the_snippet_without_indexing(
    client: TestClient, embedded_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker saw this message MAX_TASK_DELIVERIES times already (each time the worker died
    running it): this delivery records why and drops it instead of running it again."""
    monkeypatch.setattr("worker.deliveries.DeliveryCapped.deliveries", lambda self: 4)

    async def must_not_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("a dropped message must not be indexed")

    monkeypatch.setattr("coach.snippets.index", must_not_run)
    upload(client)
    before = state(client, embedded_env)
    accepted = upload(client, title="poison")
    snippet = client.get(f"/api/v1/snippets/{accepted['id']}").json()
    task = client.get(f"/api/v1/tasks/{accepted['task_id']}").json()
    assert (snippet["status"], snippet["error"], snippet["chunk_count"]) == (
        "failed",
        "worker lost 3 times while indexing",
        0,
    )
    assert task["state"] == "FAILURE" and task["error"].startswith("IndexingFailed: ")
    assert state(client, embedded_env)[0] == before[0] + 1


def test_deliveries_up_to_the_limit_run_the_task(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.deliveries.DeliveryCapped.deliveries", lambda self: 3)
    accepted = upload(client, content=FIB)
    assert client.get(f"/api/v1/snippets/{accepted['id']}").json()["status"] == "indexed"


# Readiness: the details on the internal network only.


@pytest.mark.parametrize("path", ["/health/ready", "/health"])
def test_readiness_details_only_for_the_internal_network(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    async def database_down(*_: Any) -> Any:
        raise OSError(f"could not connect to {SECRET}")

    monkeypatch.setattr(
        "coach.health.database", lambda rt: health._timed("database", True, database_down)
    )
    # As nginx forwards every request: with the client's address.
    public = client.get(
        path, headers={"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"}
    )
    internal = client.get(path)  # a probe on the app network, straight to the backend
    assert public.status_code == internal.status_code == 503
    body = public.json()
    assert set(body) == {"status", "checks"} and body["status"] == "unhealthy"
    assert body["checks"]["database"] == {"status": "error", "critical": True}
    assert "hunter2" not in public.text and "0.1.0" not in public.text
    details = internal.json()
    assert details["version"] and details["environment"]
    assert "hunter2" in details["checks"]["database"]["error"]
    assert details["checks"]["database"]["latency_ms"] >= 0


def test_an_unreachable_object_store_is_503_and_its_refusals_are_not() -> None:
    """obstore's errors are no OSError: an S3 endpoint where nothing listens raises its
    GenericError, which must read as an outage (a MinIO restart), not a bug."""
    import obstore  # noqa: PLC0415
    from obstore.exceptions import GenericError, NotFoundError  # noqa: PLC0415
    from obstore.store import S3Store  # noqa: PLC0415

    store = S3Store(
        "coach-snippets",
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key_id="coach",
        secret_access_key="not-a-secret",
        region="us-east-1",
        client_options={"allow_http": True, "timeout": "2s", "connect_timeout": "2s"},
        retry_config={"max_retries": 0, "backoff": {}, "retry_timeout": timedelta(seconds=2)},
    )
    with pytest.raises(GenericError) as unreachable:
        obstore.put(store, "snippets/x", b"x")
    error = failures.as_coach_error(unreachable.value)
    assert isinstance(error, Unavailable) and error.headers == {"Retry-After": "5"}
    assert not failures.is_unavailable(NotFoundError("snippets/x not found"))


def test_qdrant_and_llm_outages_are_503_but_their_refusals_are_not() -> None:
    from qdrant_client.http.exceptions import UnexpectedResponse  # noqa: PLC0415

    def qdrant(status: int) -> UnexpectedResponse:
        return UnexpectedResponse(status, "", b"{}", httpx.Headers())

    assert failures.is_unavailable(qdrant(503)) and failures.is_unavailable(qdrant(429))
    assert not failures.is_unavailable(qdrant(400))
    assert failures.is_unavailable(LLMError("LLM API answered 503", error_type="503"))
    assert failures.is_unavailable(LLMError("LLM API unreachable"))  # transport, deadline
    refused = LLMError("LLM API answered 401: bad key", error_type="401")
    assert not failures.is_unavailable(refused), "a wrong key is no outage: no Retry-After"
    assert isinstance(failures.as_coach_error(refused), InternalError)
