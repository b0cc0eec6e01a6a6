"""The coach's flows in embedded mode, through the HTTP API as a user sees them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.samples import FIB

QUEUE = "\n".join(
    f"class Queue{i}:\n    def push(self, item):\n        self.items.append(item)\n"
    for i in range(30)
)


def upload(
    client: TestClient, title: str = "fib", content: str = FIB, language: str = "python"
) -> dict[str, Any]:
    response = client.post(
        "/api/v1/snippets", json={"title": title, "language": language, "content": content}
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def assert_error(response: Any, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert set(body) == {"error", "detail", "request_id", "trace_id"}
    assert body["request_id"] == response.headers["x-request-id"]


def state(client: TestClient, data_dir: Path) -> tuple[int, list[str]]:
    """What a bad request must not change: snippet rows and stored objects."""
    total = client.get("/api/v1/snippets").json()["total"]
    objects = sorted(
        str(p.relative_to(data_dir)) for p in (data_dir / "objects").rglob("*") if p.is_file()
    )
    return total, objects


def test_upload_is_indexed_and_the_coach_cites_it(client: TestClient) -> None:
    accepted = upload(client)
    snippet = client.get(f"/api/v1/snippets/{accepted['id']}").json()
    assert snippet["status"] == "indexed"  # eager in embedded mode
    assert snippet["chunk_count"] == 1 and snippet["size_bytes"] == len(FIB.encode())
    task = client.get(f"/api/v1/tasks/{accepted['task_id']}").json()
    assert task["state"] == "SUCCESS" and task["result"]["chunks"] == 1

    answer = client.post(
        "/api/v1/coach/ask", json={"question": "How is fibonacci computed?", "top_k": 3}
    ).json()
    assert answer["model"] == "extractive-v1"
    assert answer["citations"][0]["snippet_id"] == accepted["id"]
    assert "a, b = b, a + b" in answer["answer"]
    assert answer["usage"]["completion_tokens"] > 0


def test_ask_scoped_to_one_snippet_cites_only_it(client: TestClient) -> None:
    fib = upload(client)
    queue = upload(client, title="queue", content=QUEUE)
    answer = client.post(
        "/api/v1/coach/ask",
        json={"question": "how do I push an item?", "snippet_id": queue["id"], "top_k": 5},
    ).json()
    cited = {c["snippet_id"] for c in answer["citations"]}
    assert cited == {queue["id"]}, "a scoped question must not cite other snippets"
    assert fib["id"] not in cited
    chunks = client.get(f"/api/v1/snippets/{queue['id']}").json()["chunk_count"]
    assert chunks == 4  # 120 lines, windows of 40 advancing by 32
    assert len(answer["citations"]) == chunks


def test_multipart_upload_and_streamed_content_round_trip(client: TestClient) -> None:
    payload = ("// naïve π\n" + "int main() { return 0; }\n" * 200).encode()
    response = client.post(
        "/api/v1/snippets",
        data={"title": "main.c", "language": "c"},
        files={"file": ("main.c", payload, "text/x-c")},
    )
    assert response.status_code == 202, response.text
    sid = response.json()["id"]
    content = client.get(f"/api/v1/snippets/{sid}/content")
    assert content.status_code == 200
    assert content.content == payload
    assert content.headers["content-type"].startswith("text/plain")


def test_listing_is_paginated_newest_first(client: TestClient) -> None:
    ids = [upload(client, title=f"s{i}")["id"] for i in range(3)]
    first = client.get("/api/v1/snippets", params={"limit": 2}).json()
    second = client.get("/api/v1/snippets", params={"limit": 2, "offset": 2}).json()
    assert first["total"] == second["total"] == 3
    assert [s["id"] for s in first["items"] + second["items"]] == ids[::-1]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "error"),
    [
        (
            {"json": {"title": "big", "language": "python", "content": "x" * (64 * 1024 + 1)}},
            413,
            "PayloadTooLarge",
        ),
        (
            {"json": {"title": "bin", "language": "python", "content": "a\x00b"}},
            422,
            "InvalidInput",
        ),
        ({"json": {"title": "cobol", "language": "cobol", "content": "x"}}, 422, "InvalidInput"),
        ({"json": {"title": "", "language": "python", "content": "x"}}, 422, "InvalidInput"),
        (
            {"json": {"title": "blank", "language": "python", "content": "   \n"}},
            422,
            "InvalidInput",
        ),
        (
            {"json": {"title": "extra", "language": "python", "content": "x", "admin": True}},
            422,
            "InvalidInput",
        ),
        (
            {
                "content": b'{"title": "x", "language": ',
                "headers": {"content-type": "application/json"},
            },
            422,
            "InvalidInput",
        ),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 422, "InvalidInput"),
        (
            {
                "data": {"title": "latin1", "language": "c"},
                "files": {"file": ("x.c", "caf\xe9".encode("latin-1"), "text/plain")},
            },
            422,
            "InvalidInput",
        ),
        (
            {
                "data": {"title": "png", "language": "c"},
                "files": {"file": ("x.png", b"\x89PNG\r\n\x1a\n\x00\x00", "image/png")},
            },
            422,
            "InvalidInput",
        ),
        *(
            (
                {"json": {"title": title, "language": "python", "content": "x = 1\n"}},
                422,
                "InvalidInput",
            )
            for title in ("a\x00b", "two\nlines", "esc\x1b[31m", "del\x7f", "c1\x85")
        ),
        *(
            (
                {"json": {"title": "ctl", "language": "python", "content": content}},
                422,
                "InvalidInput",
            )
            for content in ("x = 1\x1b[2J\n", "x = 1\x85\n", "x = '\x07'\n")
        ),
        (
            {
                "data": {"title": "nul\x00title", "language": "c"},
                "files": {"file": ("x.c", b"int x;\n", "text/plain")},
            },
            422,
            "InvalidInput",
        ),
        (
            {
                "data": {"title": "ctl", "language": "c"},
                "files": {"file": ("x.c", b"int x;\x1b\n", "text/plain")},
            },
            422,
            "InvalidInput",
        ),
        (
            {
                "content": b'{"title": "lone \\ud800", "language": "python", "content": "x"}',
                "headers": {"content-type": "application/json"},
            },
            422,
            "InvalidInput",
        ),
    ],
    ids=[
        "oversize",
        "nul-bytes",
        "unknown-language",
        "empty-title",
        "blank-content",
        "unknown-field",
        "malformed-json",
        "wrong-content-type",
        "not-utf8",
        "binary-file",
        "title-nul",
        "title-newline",
        "title-escape",
        "title-del",
        "title-c1",
        "content-escape",
        "content-c1",
        "content-bell",
        "multipart-title-nul",
        "multipart-content-escape",
        "title-lone-surrogate",
    ],
)
def test_bad_uploads_are_4xx_and_change_nothing(
    client: TestClient, embedded_env: Path, request_kwargs: dict[str, Any], status: int, error: str
) -> None:
    upload(client)
    before = state(client, embedded_env)
    response = client.post("/api/v1/snippets", **request_kwargs)
    assert_error(response, status, error)
    assert state(client, embedded_env) == before


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"question": ""}, 422),
        ({"question": "   "}, 422),
        ({"question": "x" * 2001}, 422),
        ({"question": "q", "top_k": 0}, 422),
        ({"question": "q", "top_k": 21}, 422),
        ({"question": "q", "snippet_id": "not-a-uuid"}, 422),
        ({"question": "q", "snippet_id": str(uuid.uuid4())}, 404),
        ({"question": "why\x00"}, 422),
        ({"question": "why\x1b[2J"}, 422),
        ({"question": "why\x9b"}, 422),
    ],
    ids=[
        "empty",
        "blank",
        "too-long",
        "top-k-0",
        "top-k-21",
        "bad-snippet-id",
        "unknown-snippet",
        "nul",
        "escape",
        "c1",
    ],
)
def test_bad_questions_are_4xx(client: TestClient, body: dict[str, Any], status: int) -> None:
    response = client.post("/api/v1/coach/ask", json=body)
    assert_error(response, status, "NotFound" if status == 404 else "InvalidInput")


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/snippets/{uuid.uuid4()}",
        f"/api/v1/snippets/{uuid.uuid4()}/content",
        f"/api/v1/tasks/{uuid.uuid4()}",
        "/api/v1/nowhere",
    ],
)
def test_unknown_ids_are_404(client: TestClient, path: str) -> None:
    assert_error(client.get(path), 404, "NotFound")


def test_malformed_ids_are_422(client: TestClient) -> None:
    assert_error(client.get("/api/v1/snippets/123"), 422, "InvalidInput")
    assert_error(client.get("/api/v1/tasks/bad$id"), 422, "InvalidInput")


def test_request_id_is_passed_through_or_made(client: TestClient) -> None:
    given = client.get("/health/live", headers={"X-Request-ID": "edge-1234567890"})
    assert given.headers["x-request-id"] == "edge-1234567890"
    forged = client.get("/health/live", headers={"X-Request-ID": "bad id\nInjected: 1"})
    assert forged.headers["x-request-id"] != "bad id\nInjected: 1"
    assert len(forged.headers["x-request-id"]) == 32


def test_health_reports_every_dependency(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and set(ready.json()["checks"]) == {"database", "redis"}
    full = client.get("/health")
    body = full.json()
    assert full.status_code == 200 and body["status"] == "healthy"
    assert set(body["checks"]) == {"database", "redis", "qdrant", "object_store", "llm"}
    assert body["checks"]["redis"]["status"] == "embedded"
    assert body["version"]
    assert client.get("/metrics").status_code == 200
