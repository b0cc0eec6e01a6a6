"""Qdrant local mode as coach.vectors drives it: a batch is one SQLite transaction, durable when
the call returns and absent if it fails; a held client is opened once, yet gives way to another
process that needs the directory and sees what that process wrote."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models

from coach import vectors as vectors_module
from coach.settings import get_settings
from coach.vectors import VectorStore, one_transaction
from tests.support.processes import ROOT

DIM = 8
COLLECTION = "c"


def _points(n: int) -> list[models.PointStruct]:
    return [
        models.PointStruct(id=str(uuid.uuid4()), vector=[1.0] + [0.0] * (DIM - 1), payload={"n": i})
        for i in range(n)
    ]


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[QdrantClient, list[str]]]:
    """A local-mode client with one collection, and the SQL statements its storage runs."""
    client = QdrantClient(path=str(tmp_path))
    client.create_collection(
        COLLECTION, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    statements: list[str] = []
    # qdrant-client's internals, as one_transaction relies on them (checked against 1.20.0)
    storage = client._client._get_collection(COLLECTION).storage  # type: ignore[attr-defined]
    storage.storage.set_trace_callback(statements.append)
    yield client, statements
    client.close()


def _on_disk(path: Path) -> int:
    client = QdrantClient(path=str(path))
    try:
        return client.count(COLLECTION, exact=True).count
    finally:
        client.close()


def test_a_batch_is_one_transaction_durable_when_it_returns(
    local: tuple[QdrantClient, list[str]], tmp_path: Path
) -> None:
    client, statements = local
    client.upsert(COLLECTION, points=_points(5), wait=True)
    # If this fails, qdrant-client stopped committing per point: one_transaction may be moot.
    assert statements.count("COMMIT") == 5, "local mode as checked: one commit per point"
    statements.clear()
    with one_transaction(client, COLLECTION):
        client.upsert(COLLECTION, points=_points(50), wait=True)
        client.delete(COLLECTION, points_selector=models.FilterSelector(
            filter=models.Filter(must=[models.FieldCondition(
                key="n", match=models.MatchValue(value=0))])))  # fmt: skip
    # If this fails, the internals one_transaction patches changed (see its docstring).
    assert statements.count("COMMIT") == 1
    client.close()
    assert _on_disk(tmp_path) == 5 + 50 - 2  # the two n=0 points deleted


def test_a_failed_batch_leaves_nothing_on_disk(
    local: tuple[QdrantClient, list[str]], tmp_path: Path
) -> None:
    client, statements = local
    with pytest.raises(RuntimeError, match="interrupted"), one_transaction(client, COLLECTION):
        client.upsert(COLLECTION, points=_points(20), wait=True)
        raise RuntimeError("interrupted")
    assert "ROLLBACK" in statements
    client.close()
    assert _on_disk(tmp_path) == 0


def _store_points(n: int) -> list[tuple[uuid.UUID, list[float], dict[str, object]]]:
    dim = get_settings().embedding_dim
    return [
        (uuid.uuid4(), [1.0] + [0.0] * (dim - 1), {"snippet_id": str(uuid.uuid4())})
        for _ in range(n)
    ]


def test_a_held_client_opens_once_and_gives_way_to_another_process(
    embedded_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[object] = []

    class Counting(QdrantClient):
        def __init__(self, **kwargs: object) -> None:
            opened.append(kwargs)
            super().__init__(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(vectors_module, "QdrantClient", Counting)
    store = VectorStore(get_settings())
    with store.held():
        store.ensure()
        for _ in range(5):
            store.upsert(_store_points(1))
        assert store.count() == 5 and len(opened) == 1, "one client for every call"
        # Another process needs the directory while this one holds it, idle: it gets its turn.
        writer = (
            "from coach.settings import get_settings; from coach.vectors import VectorStore; "
            "from tests.unit.test_vectors_local import _store_points; "
            "VectorStore(get_settings()).upsert(_store_points(1))"
        )
        subprocess.run(
            [sys.executable, "-c", writer], cwd=ROOT, env={**os.environ}, check=True, timeout=120
        )
        assert store.count() == 6, "reopened: what the other process wrote is seen"
        assert len(opened) == 2
    with (embedded_env / "qdrant.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released at the end: free now
