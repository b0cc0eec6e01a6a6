"""Chunk vectors in Qdrant: a server, or qdrant-client's local mode (same API, in-process).

Searches go through an alias (QDRANT_COLLECTION); the physical collections behind it are
versioned, so a reindex builds a new one and swaps the alias atomically.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from qdrant_client import QdrantClient, models

from coach.settings import Settings

_local_clients: dict[str, QdrantClient] = {}
_local_lock = threading.Lock()


@dataclass(frozen=True)
class Hit:
    chunk_id: uuid.UUID
    snippet_id: uuid.UUID
    score: float
    payload: dict[str, Any]


def _client(settings: Settings) -> QdrantClient:
    if settings.qdrant_url:
        return QdrantClient(
            url=settings.qdrant_url,
            api_key=settings.qdrant_api_key.get_secret_value() or None,
            timeout=10,
            # Plain http inside the compose network; the key is still sent as a header.
            https=settings.qdrant_url.startswith("https://"),
        )
    # Local mode locks its directory: one client per path per process, shared by threads.
    path = str((settings.data_dir / "qdrant").resolve())
    with _local_lock:
        if path not in _local_clients:
            _local_clients[path] = QdrantClient(path=path)
        return _local_clients[path]


class VectorStore:
    def __init__(self, settings: Settings) -> None:
        self.alias = settings.qdrant_collection
        self.dim = settings.embedding_dim
        self.kind = "server" if settings.qdrant_url else "local"
        self.client = _client(settings)
        # Local mode is not safe for concurrent use; a server is.
        self._lock: AbstractContextManager[Any] = (
            threading.Lock() if self.kind == "local" else nullcontext()
        )

    def new_collection_name(self) -> str:
        return f"{self.alias}_{time.strftime('%Y%m%d%H%M%S')}_{uuid.uuid4().hex[:6]}"

    def create_collection(self, name: str) -> None:
        with self._lock:
            self.client.create_collection(
                name,
                vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
            )
            if self.kind == "server":  # local mode ignores payload indexes (and warns)
                self.client.create_payload_index(
                    name, "snippet_id", models.PayloadSchemaType.KEYWORD
                )

    def target(self) -> str | None:
        """The physical collection the alias points at, if any."""
        with self._lock:
            for alias in self.client.get_aliases().aliases:
                if alias.alias_name == self.alias:
                    return alias.collection_name
        return None

    def ensure(self) -> str:
        """Make sure the alias exists, creating a first collection behind it."""
        current = self.target()
        if current is not None:
            return current
        name = self.new_collection_name()
        self.create_collection(name)
        self.switch_alias(name)
        return name

    def switch_alias(self, name: str) -> str | None:
        """Point the alias at `name` in one atomic operation; returns the previous target."""
        previous = self.target()
        actions: list[Any] = []
        if previous is not None:
            actions.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias))
            )
        actions.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=name, alias_name=self.alias)
            )
        )
        with self._lock:
            self.client.update_collection_aliases(change_aliases_operations=actions)
        return previous

    def upsert(
        self,
        points: list[tuple[uuid.UUID, list[float], dict[str, Any]]],
        collection: str | None = None,
    ) -> None:
        if not points:
            return
        with self._lock:
            self.client.upsert(
                collection or self.alias,
                points=[
                    models.PointStruct(id=str(pid), vector=vec, payload=payload)
                    for pid, vec, payload in points
                ],
                wait=True,
            )

    def delete_snippet(self, snippet_id: uuid.UUID, keep: set[uuid.UUID] | None = None) -> None:
        """Remove a snippet's points, except `keep` (stale chunks after a re-index)."""
        must_not: list[Any] = [models.HasIdCondition(has_id=[str(k) for k in keep])] if keep else []
        selector = models.Filter(
            must=[
                models.FieldCondition(
                    key="snippet_id", match=models.MatchValue(value=str(snippet_id))
                )
            ],
            must_not=must_not,
        )
        with self._lock:
            self.client.delete(
                self.alias, points_selector=models.FilterSelector(filter=selector), wait=True
            )

    def search(
        self, vector: list[float], *, top_k: int, snippet_id: uuid.UUID | None = None
    ) -> list[Hit]:
        query_filter = None
        if snippet_id is not None:
            query_filter = models.Filter(
                must=[
                    models.FieldCondition(
                        key="snippet_id", match=models.MatchValue(value=str(snippet_id))
                    )
                ]
            )
        with self._lock:
            result = self.client.query_points(
                self.alias, query=vector, limit=top_k, query_filter=query_filter, with_payload=True
            )
        return [
            Hit(
                uuid.UUID(str(p.id)),
                uuid.UUID(str((p.payload or {})["snippet_id"])),
                p.score,
                dict(p.payload or {}),
            )
            for p in result.points
        ]

    def count(self, collection: str | None = None) -> int:
        with self._lock:
            return self.client.count(collection or self.alias, exact=True).count

    def drop(self, name: str) -> None:
        with self._lock:
            self.client.delete_collection(name)

    def collections(self) -> list[str]:
        with self._lock:
            return [c.name for c in self.client.get_collections().collections]

    def ping(self) -> None:
        with self._lock:
            self.client.get_collections()
