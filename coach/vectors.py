"""Chunk vectors in Qdrant: a server, or qdrant-client's local mode (same API, in-process).

Searches go through an alias (QDRANT_COLLECTION); the physical collections behind it are
versioned, so a reindex builds a new one and swaps the alias atomically.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from qdrant_client import QdrantClient, models
from qdrant_client.local.persistence import CollectionPersistence
from qdrant_client.local.qdrant_local import QdrantLocal

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
    IDLE_CHECK_S = 0.01  # how often a held client looks for another process waiting for it

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
        self._lock_path = self._path.parent / "qdrant.lock"
        self._wait_path = self._path.parent / "qdrant.wait"
        # Local mode, held (see `held`): the open client and its directory lock, guarded by
        # `_mutex` (taken for every call, so the idle release never closes a client in use).
        self._mutex = threading.RLock()
        self._holds = 0
        self._held: tuple[QdrantClient, IO[str]] | None = None
        self._watcher: threading.Thread | None = None
        self._unheld = threading.Event()

    @contextmanager
    def _client(self) -> Iterator[QdrantClient]:
        """A server client, or local mode: the held client (`held`), else one opened for this
        one operation.

        Local mode locks its directory for as long as a client is open, so the backend, the
        worker and the tooling (separate processes in development) take turns under a file
        lock instead of holding it. Production runs a Qdrant server, where none of this applies.
        """
        if self._server is not None:
            yield self._server
            return
        with self._mutex:
            if not self._holds:
                client, lock = self._open()
                try:
                    yield client
                finally:
                    client.close()
                    _unlock(lock)
                return
            if self._held is None:
                self._held = self._open()
            try:
                yield self._held[0]
            except BaseException:
                # A failed write may have applied in memory what did not reach the disk: the
                # next call reopens from the disk.
                self._release()
                raise

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep one local-mode client open for the calls made inside (a reindex makes
        thousands): opening one loads every collection from disk, which grows with the index.

        Other processes still take their turns: one waiting for the directory announces it
        (a shared lock on qdrant.wait) and a watcher thread closes the held client at the next
        moment no call is using it; the next call reopens it, seeing what they wrote. A
        server client is always shared: nothing to hold.
        """
        if self._server is not None:
            yield
            return
        with self._mutex:
            self._holds += 1
            if self._watcher is None:
                # An event per watcher: one still winding down must not miss its stop because
                # the next watcher's start cleared a shared one.
                self._unheld = threading.Event()
                self._watcher = threading.Thread(
                    target=self._give_way,
                    args=(self._unheld,),
                    name="qdrant-local-idle",
                    daemon=True,
                )
                self._watcher.start()
        try:
            yield
        finally:
            with self._mutex:
                self._holds -= 1
                watcher = self._watcher if not self._holds else None
                if watcher is not None:
                    self._watcher = None
                    self._unheld.set()
                    self._release()
            if watcher is not None:
                watcher.join()

    def _give_way(self, unheld: threading.Event) -> None:
        while not unheld.wait(self.IDLE_CHECK_S):
            if self._held is None or not self._mutex.acquire(blocking=False):
                continue  # nothing held, or a call is using it: look again later
            try:
                if self._held is not None and _others_wait(self._wait_path):
                    self._release()
            finally:
                self._mutex.release()

    def _release(self) -> None:
        if self._held is not None:
            client, lock = self._held
            self._held = None
            try:
                client.close()
            finally:
                _unlock(lock)

    def _open(self) -> tuple[QdrantClient, IO[str]]:
        """A local-mode client and the directory's lock, waited for as announced on
        qdrant.wait (see `held`)."""
        self._path.mkdir(parents=True, exist_ok=True)
        lock = self._lock_path.open("a")  # closing it (_unlock) releases the lock
        try:
            with _readable(self._wait_path) as wait:
                fcntl.flock(wait, fcntl.LOCK_SH)
                fcntl.flock(lock, fcntl.LOCK_EX)
            return QdrantClient(path=str(self._path)), lock
        except BaseException:
            lock.close()
            raise

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
        structs = [
            # Unvalidated: both modes check the points themselves (server: the request's JSON).
            models.PointStruct.model_construct(id=str(pid), vector=vec, payload=payload)
            for pid, vec, payload in points
        ]
        with self._client() as client, one_transaction(client, collection or self.alias):
            client.upsert(collection or self.alias, points=structs, wait=True)

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
        with self._client() as client, one_transaction(client, self.alias):
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
        with self._client() as client, one_transaction(client, collection):
            client.delete(
                collection, points_selector=models.FilterSelector(filter=selector), wait=True
            )

    def delete_points(self, collection: str, ids: list[uuid.UUID]) -> None:
        with self._client() as client, one_transaction(client, collection):
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


def _unlock(lock: IO[str]) -> None:
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


def _readable(path: Path) -> IO[bytes]:
    """The file, made if missing, open for reading only: flock needs no more, so a file that
    another user made (the host's tooling runs as root on a local-stores volume) still works,
    where opening it to write would be refused."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_CREAT, 0o644), "rb")


def _others_wait(wait_path: Path) -> bool:
    """Whether a process (or another store of this one) is waiting for the directory lock."""
    with _readable(wait_path) as wait:
        try:
            fcntl.flock(wait, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(wait, fcntl.LOCK_UN)
        return False


class _Deferred:
    """A SQLite connection whose `with` block neither commits nor rolls back: the statements
    of many blocks join one transaction, which its owner ends."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        return self.connection

    def __exit__(self, *_: object) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


@contextmanager
def one_transaction(client: QdrantClient, collection: str) -> Iterator[None]:
    """Local mode's writes to `collection` inside this block as one SQLite transaction,
    committed (durable) at its end, rolled back if the block fails; a server client, or local
    internals not as expected, go unchanged.

    Local mode commits, and fsyncs, one transaction per point (`CollectionPersistence.persist`
    and `.delete` each run in `with self.storage:`): a 512-point batch paid 512 fsyncs. There
    is no public way to batch them, so this reaches into qdrant-client's internals, as of
    qdrant-client 1.20.0; tests/unit/test_vectors_local.py fails if they change.
    """
    storage = _local_storage(client, collection)
    if storage is None:
        yield
        return
    connection = storage.storage
    storage.storage = _Deferred(connection)  # type: ignore[assignment]
    try:
        yield
    except BaseException:
        connection.rollback()
        raise
    else:
        connection.commit()
    finally:
        storage.storage = connection


def _local_storage(client: QdrantClient, collection: str) -> CollectionPersistence | None:
    local = getattr(client, "_client", None)
    if not isinstance(local, QdrantLocal):
        return None
    try:
        storage = getattr(local._get_collection(collection), "storage", None)
    except (ValueError, RuntimeError):  # no such collection, closed: the call itself says so
        return None
    if isinstance(storage, CollectionPersistence) and isinstance(
        storage.storage, sqlite3.Connection
    ):
        return storage
    return None
