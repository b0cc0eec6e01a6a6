"""API keys and tenants in embedded mode: who may call, what a key may do, and that one
tenant's key never sees, fetches or gets cited another tenant's code."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from coach import apikeys
from coach.models import Question
from coach.settings import Settings
from tests.support.embedded import bearer, in_app, runtime_of
from tests.support.processes import ROOT, python
from tests.support.samples import FIB
from tests.unit.test_api_embedded import QUEUE, assert_error

API_ROUTES = [
    ("GET", "/api/v1/snippets"),
    ("POST", "/api/v1/snippets"),
    ("GET", "/api/v1/snippets/{sid}"),
    ("GET", "/api/v1/snippets/{sid}/content"),
    ("GET", "/api/v1/tasks/{task}"),
    ("POST", "/api/v1/coach/ask"),
]
UPLOAD = {"title": "fib", "language": "python", "content": FIB}
ASK = {"question": "How is fibonacci computed?", "top_k": 5}


def _call(client: TestClient, method: str, path: str, headers: dict[str, str], **ids: str) -> Any:
    url = path.format(**ids)
    if method == "POST":
        body = UPLOAD if url.endswith("/snippets") else ASK
        return client.post(url, json=body, headers=headers)
    return client.get(url, headers=headers)


def _upload(client: TestClient, key: str, **fields: str) -> dict[str, Any]:
    response = client.post("/api/v1/snippets", json=UPLOAD | fields, headers=bearer(key))
    assert response.status_code == 202, response.text
    return dict(response.json())


@pytest.fixture
def bare(client: TestClient) -> TestClient:
    """The app with no key sent unless a test sends one."""
    del client.headers["Authorization"]
    return client


def _snippet_count(client: TestClient, key: str) -> int:
    return int(client.get("/api/v1/snippets", headers=bearer(key)).json()["total"])


# Who may call


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_every_api_route_needs_a_key(bare: TestClient, method: str, path: str) -> None:
    ids = {"sid": str(uuid.uuid4()), "task": str(uuid.uuid4())}
    for headers in (
        {},
        bearer("coach_" + "x" * 43),  # well-formed, unknown
        {"X-API-Key": "not-a-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},  # another scheme is no key
    ):
        response = _call(bare, method, path, headers, **ids)
        assert_error(response, 401, "Unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "status"),
    [(b'{"question": ', 422), (b'\xff{"question": 1}', 400)],
    ids=["json", "bytes"],
)
def test_a_malformed_body_without_a_key_is_still_401(
    bare: TestClient, make_key: Callable[[str, str], str], body: bytes, status: int
) -> None:
    # FastAPI reads a JSON body before any dependency runs: the error handlers check the key.
    json_type = {"content-type": "application/json"}
    refused = bare.post("/api/v1/coach/ask", content=body, headers=json_type)
    assert_error(refused, 401, "Unauthorized")
    key = make_key("t", "write")
    refused = bare.post("/api/v1/coach/ask", content=body, headers=json_type | bearer(key))
    assert refused.status_code == status, refused.text


def test_a_request_without_a_key_changes_nothing(
    bare: TestClient, make_key: Callable[[str, str], str]
) -> None:
    key = make_key("t", "write")
    assert_error(bare.post("/api/v1/snippets", json=UPLOAD), 401, "Unauthorized")
    assert _snippet_count(bare, key) == 0


def test_both_headers_carry_a_key(bare: TestClient, make_key: Callable[[str, str], str]) -> None:
    key = make_key("t", "read")
    assert bare.get("/api/v1/snippets", headers={"X-API-Key": key}).status_code == 200
    assert bare.get("/api/v1/snippets", headers=bearer(key)).status_code == 200
    assert bare.get("/api/v1/snippets", headers={"Authorization": f"bearer {key}"}).is_success


def test_health_and_metrics_stay_open(bare: TestClient) -> None:
    for path in ("/health/live", "/health/ready", "/health", "/metrics"):
        assert bare.get(path).status_code == 200, path


def test_a_revoked_key_is_refused_at_once(
    bare: TestClient, make_key: Callable[[str, str], str]
) -> None:
    key = make_key("t", "write")
    assert bare.get("/api/v1/snippets", headers=bearer(key)).status_code == 200
    sessions = runtime_of(bare).sessions
    revoked = in_app(bare, partial(apikeys.revoke, sessions, apikeys.prefix_of(key)))
    assert revoked.revoked_at is not None
    for method, path in API_ROUTES:
        ids = {"sid": str(uuid.uuid4()), "task": "t-1"}
        assert_error(_call(bare, method, path, bearer(key), **ids), 401, "Unauthorized")


# What a key may do


def test_a_read_key_reads_but_cannot_upload_or_ask(
    bare: TestClient, make_key: Callable[[str, str], str]
) -> None:
    writer, reader = make_key("t", "write"), make_key("t", "read")
    accepted = _upload(bare, writer)
    refused = bare.post("/api/v1/snippets", json=UPLOAD, headers=bearer(reader))
    assert_error(refused, 403, "Forbidden")
    assert "'write'" in refused.json()["detail"]
    assert_error(bare.post("/api/v1/coach/ask", json=ASK, headers=bearer(reader)), 403, "Forbidden")
    assert _snippet_count(bare, reader) == 1, "the refused upload stored nothing"
    sid, task = accepted["id"], accepted["task_id"]
    for path in (
        f"/api/v1/snippets/{sid}",
        f"/api/v1/snippets/{sid}/content",
        f"/api/v1/tasks/{task}",
    ):
        assert bare.get(path, headers=bearer(reader)).status_code == 200, path


def test_admin_implies_write(bare: TestClient, make_key: Callable[[str, str], str]) -> None:
    admin = make_key("t", "admin")
    _upload(bare, admin)
    assert bare.post("/api/v1/coach/ask", json=ASK, headers=bearer(admin)).status_code == 200


# Tenants


def test_a_tenant_never_sees_another_tenants_snippet(
    bare: TestClient, make_key: Callable[[str, str], str]
) -> None:
    alice, bob = make_key("alice", "write"), make_key("bob", "write")
    mine = _upload(bare, alice, title="alice-fib")
    theirs = _upload(bare, bob, title="bob-queue", content=QUEUE)

    listed = bare.get("/api/v1/snippets", headers=bearer(alice)).json()
    assert [s["id"] for s in listed["items"]] == [mine["id"]] and listed["total"] == 1
    for path in (
        f"/api/v1/snippets/{theirs['id']}",
        f"/api/v1/snippets/{theirs['id']}/content",
        f"/api/v1/tasks/{theirs['task_id']}",
    ):
        # 404 as for an id that never was: a 403 would tell that it exists.
        assert_error(bare.get(path, headers=bearer(alice)), 404, "NotFound")
        assert bare.get(path, headers=bearer(bob)).status_code == 200, path
    scoped = {"question": "how do I push an item?", "snippet_id": theirs["id"]}
    assert_error(
        bare.post("/api/v1/coach/ask", json=scoped, headers=bearer(alice)), 404, "NotFound"
    )


def test_asks_cite_only_the_askers_tenant(
    bare: TestClient, make_key: Callable[[str, str], str]
) -> None:
    alice, bob = make_key("alice", "write"), make_key("bob", "write")
    _upload(bare, alice, title="alice-fib")
    theirs = _upload(bare, bob, title="bob-queue", content=QUEUE)
    # Bob's code is what this question is about, word for word: still never Alice's answer.
    question = {"question": "def push(self, item): self.items.append(item)", "top_k": 20}
    answer = bare.post("/api/v1/coach/ask", json=question, headers=bearer(alice)).json()
    cited = {c["snippet_id"] for c in answer["citations"]}
    assert cited and theirs["id"] not in cited
    assert "self.items.append" not in answer["answer"]
    bobs = bare.post("/api/v1/coach/ask", json=question, headers=bearer(bob)).json()
    assert {c["snippet_id"] for c in bobs["citations"]} == {theirs["id"]}


def test_a_question_records_its_tenant_and_key(
    client: TestClient, make_key: Callable[[str, str], str]
) -> None:
    key = make_key("alice", "write")
    _upload(client, key)
    asked = client.post("/api/v1/coach/ask", json=ASK, headers=bearer(key)).json()
    sessions = runtime_of(client).sessions
    principal = in_app(client, partial(apikeys.authenticate, sessions, key))

    async def row() -> Question | None:
        async with sessions() as session:
            return await session.scalar(
                select(Question).where(Question.id == uuid.UUID(asked["id"]))
            )

    question = in_app(client, row)
    assert question is not None and principal is not None
    assert (question.tenant, question.api_key_id) == ("alice", principal.key_id)


def test_request_log_lines_name_the_tenant_and_key_prefix_never_the_key(
    bare: TestClient, make_key: Callable[[str, str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    key = make_key("alice", "write")
    capsys.readouterr()
    _upload(bare, key)
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    indexed = next(line for line in lines if line["event"] == "snippet indexed")
    assert indexed["tenant"] == "alice" and indexed["key_prefix"] == apikeys.prefix_of(key)
    assert key not in out and apikeys.hash_key(key) not in out


def test_openapi_declares_both_schemes_and_the_auth_errors(bare: TestClient) -> None:
    document = bare.get("/api/v1/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <API key>`",
    }
    assert (schemes["apiKey"]["type"], schemes["apiKey"]["in"]) == ("apiKey", "header")
    assert schemes["apiKey"]["name"] == "X-API-Key"
    operations = [
        (path, operation)
        for path, item in document["paths"].items()
        if path.startswith("/api/v1/")
        for operation in item.values()
    ]
    assert len(operations) == len(API_ROUTES)
    for path, operation in operations:
        assert {"bearer": []} in operation["security"] and {"apiKey": []} in operation["security"]
        assert {"401", "403"} <= set(operation["responses"]), path
    for path, item in document["paths"].items():
        if not path.startswith("/api/v1/"):
            assert all("security" not in op for op in item.values()), path


# Vectors from before tenants existed


def test_points_without_a_tenant_belong_to_the_default_tenant_only(
    client: TestClient,
) -> None:
    rt = runtime_of(client)
    vector = rt.embedder.embed(["legacy"])[0]
    legacy = {"snippet_id": str(uuid.uuid4()), "text": "legacy", "start_line": 1, "end_line": 1}
    rt.vectors.ensure()
    rt.vectors.upsert([(uuid.uuid4(), vector, legacy)])
    assert [h.payload["text"] for h in rt.vectors.search(vector, top_k=5, tenant="default")] == [
        "legacy"
    ]
    assert rt.vectors.search(vector, top_k=5, tenant="dev") == []


# The command line


def _coach(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python("-m", "coach", *args),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_keys_cli_creates_lists_and_revokes(embedded_env: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(embedded_env)}
    assert _coach(env, "migrate").returncode == 0
    made = _coach(env, "keys", "create", "--tenant", "acme", "--scope", "read", "--name", "ci")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert set(created) == {"id", "prefix", "tenant", "scopes", "name", "key"}
    assert (created["tenant"], created["scopes"], created["name"]) == ("acme", ["read"], "ci")
    key = created["key"]
    assert key.startswith("coach_") and created["prefix"] == key[: len(created["prefix"])]
    assert key not in made.stderr, "the key is printed once, on stdout"

    db = sqlite3.connect(embedded_env / "coach.db")
    stored = [str(v) for row in db.execute("SELECT * FROM api_keys") for v in row]
    assert key not in stored and apikeys.hash_key(key) in stored, "only the hash is kept"

    listed = _coach(env, "keys", "list", "--tenant", "acme")
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry["id"] == created["id"] and entry["revoked_at"] is None
    assert "key" not in entry and key not in listed.stdout
    assert apikeys.hash_key(key) not in listed.stdout

    revoked = _coach(env, "keys", "revoke", created["prefix"])
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"]
    assert db.execute("SELECT revoked_at FROM api_keys WHERE tenant = 'acme'").fetchone()[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "revoke", "coach_nothing"), "no api key with id or prefix"),
        (("keys", "create", "--tenant", "acme", "--scope", "root"), "invalid choice: 'root'"),
        (("keys", "create", "--tenant", "Not A Tenant", "--scope", "read"), "tenant"),
    ],
    ids=["unknown-key", "unknown-scope", "bad-tenant"],
)
def test_keys_cli_refuses_bad_input_with_exit_2(
    embedded_env: Path, args: tuple[str, ...], message: str
) -> None:
    env = {**os.environ, "DATA_DIR": str(embedded_env)}
    assert _coach(env, "migrate").returncode == 0
    before = sqlite3.connect(embedded_env / "coach.db").execute("SELECT * FROM api_keys").fetchall()
    refused = _coach(env, *args)
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert refused.stdout == ""
    after = sqlite3.connect(embedded_env / "coach.db").execute("SELECT * FROM api_keys").fetchall()
    assert after == before


def test_migrate_registers_the_bootstrap_key_once(embedded_env: Path, tmp_path: Path) -> None:
    key = apikeys.generate_key()
    (tmp_path / "api_key").write_text(key + "\n")
    env = {
        **os.environ,
        "DATA_DIR": str(embedded_env),
        "API_KEY_BOOTSTRAP_FILE": str(tmp_path / "api_key"),
    }
    for _ in range(2):
        done = _coach(env, "migrate")
        assert done.returncode == 0, done.stderr
        assert key not in done.stdout + done.stderr
    db = sqlite3.connect(embedded_env / "coach.db")
    rows = db.execute("SELECT tenant, name, scopes, key_hash FROM api_keys").fetchall()
    assert rows == [("dev", "dev", '["write"]', apikeys.hash_key(key))]

    (tmp_path / "api_key").write_text("hunter2\n")
    refused = _coach(env, "migrate")
    assert refused.returncode == 2 and "API_KEY_BOOTSTRAP_FILE" in refused.stderr
    assert "hunter2" not in refused.stderr


# The schema change


def test_migration_0002_keeps_rows_and_downgrades(embedded_env: Path) -> None:
    from alembic.autogenerate import compare_metadata  # noqa: PLC0415
    from alembic.migration import MigrationContext  # noqa: PLC0415

    from coach.db import make_engine  # noqa: PLC0415
    from coach.migrate import downgrade, migrate  # noqa: PLC0415
    from coach.models import Base  # noqa: PLC0415

    settings = Settings(data_dir=embedded_env)
    assert asyncio.run(migrate(settings, to="0001")) == (None, "0001")
    sid, qid, cid = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    db = sqlite3.connect(embedded_env / "coach.db")
    db.execute(
        "INSERT INTO snippets VALUES (?, 't', 'python', 'k', 'h', 1, 'indexed', NULL, 1, NULL,"
        " '2025-01-01', '2025-01-01')",
        (sid,),
    )
    db.execute("INSERT INTO chunks VALUES (?, ?, 0, 'x', 1, 1, 'h')", (cid, sid))
    db.execute(
        "INSERT INTO questions VALUES (?, 'q', 'a', 'm', ?, '[]', 1, 1, 1, NULL, '2025-01-01')",
        (qid, sid),
    )
    db.commit()

    assert asyncio.run(migrate(settings)) == ("0001", "0002")
    assert db.execute("SELECT tenant FROM snippets").fetchall() == [("default",)]
    assert db.execute("SELECT tenant, api_key_id, snippet_id FROM questions").fetchall() == [
        ("default", None, sid)
    ]

    async def differences() -> list[Any]:
        engine = make_engine(settings)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"compare_type": True}),
                        Base.metadata,
                    )
                )
        finally:
            await engine.dispose()

    assert asyncio.run(differences()) == [], "the models and migration 0002 agree"

    assert asyncio.run(downgrade(settings, "0001")) == ("0002", "0001")
    assert "tenant" not in [c[1] for c in db.execute("PRAGMA table_info(snippets)")]
    assert "api_key_id" not in [c[1] for c in db.execute("PRAGMA table_info(questions)")]
    # A rebuilt snippets table would have cascaded into chunks and questions.
    assert db.execute("SELECT count(*) FROM chunks").fetchone() == (1,)
    assert db.execute("SELECT snippet_id FROM questions").fetchall() == [(sid,)]
    assert asyncio.run(migrate(settings)) == ("0001", "0002")
