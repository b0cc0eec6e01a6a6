"""Chunk vectors in Qdrant: a server, or qdrant-client's local mode (same API, in-process).

Searches go through an alias (QDRANT_COLLECTION); the physical collections behind it are
versioned, so a reindex builds a new one and swaps the alias atomically.
"""

from __future__ import annotations

import fcntl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from qdrant_client import QdrantClient, models

from coach.models import DEFAULT_TENANT
from coach.settings import Settings


class ChunkLike(Protocol):
    @property
    def ordinal(self) -> int: ...
    @property
    def start_line(self) -> int: ...
    @property
    def end_line(self) -> int: ...
    @property
    def text(self) -> str: ...


def payload(
    snippet_id: uuid.UUID, chunk: ChunkLike, *, title: str, language: str, tenant: str
) -> dict[str, Any]:
    """What a point carries: enough to cite the chunk without a database round trip, and the
    tenant every search filters on."""
    return {
        "snippet_id": str(snippet_id),
        "tenant": tenant,
        "ordinal": chunk.ordinal,
        "title": title,
        "language": language,
        "start_line": chunk.start_line,
        "end_line": chunk.end_line,
        "text": chunk.text,
    }


def tenant_condition(tenant: str) -> models.Condition:
    """Points of `tenant`. Points written before tenants existed carry none: they are the
    'default' tenant's (as their rows are, migration 0002) until a reindex rewrites them."""
    match = models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant))
    if tenant != DEFAULT_TENANT:
        return match
    unset = models.IsEmptyCondition(is_empty=models.PayloadField(key="tenant"))
    return models.Filter(should=[match, unset])


@dataclass(frozen=True)
class Hit:
    chunk_id: uuid.UUID
    snippet_id: uuid.UUID
    score: float
    payload: dict[str, Any]


class VectorStore:
    def __init__(self, settings: Settings) -> None:
        self.alias = settings.qdrant_collection
        self.dim = settings.embedding_dim
        self.kind = "server" if settings.qdrant_url else "local"
        self._server: QdrantClient | None = None
        if settings.qdrant_url:
            self._server = QdrantClient(
                url=settings.qdrant_url,
                api_key=settings.qdrant_api_key.get_secret_value() or None,
                timeout=10,
                https=settings.qdrant_url.startswith("https://"),
            )
        self._path = (settings.data_dir / "qdrant").resolve()

    @contextmanager
    def _client(self) -> Iterator[QdrantClient]:
        """A server client, or local mode opened for this one operation.

        Local mode locks its directory for as long as a client is open, so the backend, the
        worker and the tooling (separate processes in development) take turns under a file
        lock instead of holding it. Production runs a Qdrant server, where none of this applies.
        """
        if self._server is not None:
            yield self._server
            return
        self._path.mkdir(parents=True, exist_ok=True)
        with (self._path.parent / "qdrant.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            client = QdrantClient(path=str(self._path))
            try:
                yield client
            finally:
                client.close()
                fcntl.flock(lock, fcntl.LOCK_UN)

    def new_collection_name(self) -> str:
        return f"{self.alias}_{time.strftime('%Y%m%d%H%M%S')}_{uuid.uuid4().hex[:6]}"

    def create_collection(self, name: str) -> None:
        with self._client() as client:
            client.create_collection(
                name,
                vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
            )
            if self.kind == "server":  # local mode ignores payload indexes (and warns)
                for field in ("snippet_id", "tenant"):
                    client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD)

    def target(self) -> str | None:
        """The physical collection the alias points at, if any."""
        with self._client() as client:
            for alias in client.get_aliases().aliases:
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
        with self._client() as client:
            client.update_collection_aliases(change_aliases_operations=actions)
        return previous

    def upsert(
        self,
        points: list[tuple[uuid.UUID, list[float], dict[str, Any]]],
        collection: str | None = None,
    ) -> None:
        if not points:
            return
        with self._client() as client:
            client.upsert(
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
        with self._client() as client:
            client.delete(
                self.alias, points_selector=models.FilterSelector(filter=selector), wait=True
            )

    def search(
        self,
        vector: list[float],
        *,
        top_k: int,
        tenant: str,
        snippet_id: uuid.UUID | None = None,
    ) -> list[Hit]:
        """The nearest chunks of this tenant's snippets (of one snippet, if given)."""
        must: list[Any] = [tenant_condition(tenant)]
        if snippet_id is not None:
            must.append(
                models.FieldCondition(
                    key="snippet_id", match=models.MatchValue(value=str(snippet_id))
                )
            )
        query_filter = models.Filter(must=must)
        with self._client() as client:
            result = client.query_points(
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

    def point_payload(self, collection: str, point_id: uuid.UUID) -> dict[str, Any] | None:
        """One point's payload, or None when the point does not exist."""
        with self._client() as client:
            found = client.retrieve(collection, ids=[str(point_id)], with_payload=True)
        return dict(found[0].payload or {}) if found else None

    def delete_stale(
        self, collection: str, snippet_ids: set[uuid.UUID], keep: set[uuid.UUID]
    ) -> None:
        """Remove the points of these snippets except `keep`, in one request."""
        selector = models.Filter(
            must=[
                models.FieldCondition(
                    key="snippet_id", match=models.MatchAny(any=[str(s) for s in snippet_ids])
                )
            ],
            must_not=[models.HasIdCondition(has_id=[str(k) for k in keep])] if keep else [],
        )
        with self._client() as client:
            client.delete(
                collection, points_selector=models.FilterSelector(filter=selector), wait=True
            )

    def delete_points(self, collection: str, ids: list[uuid.UUID]) -> None:
        with self._client() as client:
            client.delete(
                collection,
                points_selector=models.PointIdsList(points=[str(i) for i in ids]),
                wait=True,
            )

    def vector_size(self, collection: str) -> int | None:
        """The collection's vector size (None for named or sparse vector layouts)."""
        with self._client() as client:
            params = client.get_collection(collection).config.params.vectors
        return params.size if isinstance(params, models.VectorParams) else None

    def count(self, collection: str | None = None) -> int:
        with self._client() as client:
            return client.count(collection or self.alias, exact=True).count

    def drop(self, name: str) -> None:
        with self._client() as client:
            client.delete_collection(name)

    def collections(self) -> list[str]:
        with self._client() as client:
            return [c.name for c in client.get_collections().collections]

    def ping(self) -> None:
        with self._client() as client:
            client.get_collections()
