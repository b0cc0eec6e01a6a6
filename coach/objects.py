"""Snippet content in an object store: any S3 endpoint through obstore, or a local directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import obstore
from obstore.store import LocalStore, S3Store
from opentelemetry.trace import SpanKind

from coach.settings import Settings
from coach.tracing import tracer

# obstore has no OpenTelemetry instrumentation: the calls that matter get spans here.
S3_OPERATIONS = {"put": "PutObject", "get": "GetObject", "delete": "DeleteObject"}


@dataclass(frozen=True)
class StoredObject:
    key: str
    last_modified: datetime  # timezone-aware UTC: S3's LastModified, a local file's mtime
    size: int


class ObjectStore:
    def __init__(self, settings: Settings) -> None:
        self.kind: str
        self._store: Any
        self._bucket = settings.s3_bucket
        if settings.s3_endpoint_url:
            self.kind = "s3"
            self._store = S3Store(
                settings.s3_bucket,
                endpoint=settings.s3_endpoint_url,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id or None,
                secret_access_key=settings.s3_secret_access_key.get_secret_value() or None,
                virtual_hosted_style_request=False,
                client_options={
                    "allow_http": settings.s3_endpoint_url.startswith("http://"),
                    "timeout": "30s",
                    "connect_timeout": "3s",
                },
                # Few, quick retries: an outage should surface as a 503, not a stalled request.
                retry_config=cast(
                    Any,
                    {
                        "max_retries": 2,
                        "backoff": {
                            "init_backoff": timedelta(milliseconds=100),
                            "max_backoff": timedelta(seconds=2),
                            "base": 2,
                        },
                        "retry_timeout": timedelta(seconds=10),
                    },
                ),
            )
        else:
            self.kind = "local"
            root = settings.data_dir / "objects"
            root.mkdir(parents=True, exist_ok=True)
            self._store = LocalStore(root.resolve(), mkdir=True)

    @contextmanager
    def _span(self, operation: str, key: str) -> Iterator[None]:
        """Span `s3 PutObject` (AWS semantic conventions) on S3, `objects.put` when local."""
        attributes: dict[str, str] = {"coach.objects.kind": self.kind, "coach.objects.key": key}
        if self.kind == "s3":
            method = S3_OPERATIONS[operation]
            name, kind = f"s3 {method}", SpanKind.CLIENT
            attributes |= {
                "rpc.system": "aws-api",
                "rpc.service": "S3",
                "rpc.method": method,
                "aws.s3.bucket": self._bucket,
                "aws.s3.key": key,
            }
        else:
            name, kind = f"objects.{operation}", SpanKind.INTERNAL
        with tracer.start_as_current_span(name, kind=kind, attributes=attributes):
            yield

    async def put(self, key: str, data: bytes, content_type: str = "text/plain") -> None:
        attributes = {"Content-Type": content_type} if self.kind == "s3" else None
        with self._span("put", key):
            await obstore.put_async(self._store, key, data, attributes=attributes)

    def get(self, key: str) -> bytes:
        with self._span("get", key):
            return bytes(obstore.get(self._store, key).bytes())

    async def get_async(self, key: str) -> bytes:
        with self._span("get", key):
            result = await obstore.get_async(self._store, key)
            return bytes(await result.bytes_async())

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        with self._span("get", key):  # the request; the body streams to the client after it
            result = await obstore.get_async(self._store, key)
        async for chunk in result.stream(min_chunk_size=64 * 1024):
            yield bytes(chunk)

    async def delete(self, key: str) -> None:
        with self._span("delete", key):
            await obstore.delete_async(self._store, key)

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self._store, key)
        except FileNotFoundError:
            return False
        return True

    async def keys(self, prefix: str = "") -> list[str]:
        return [item.key for item in await self.listing(prefix)]

    async def listing(self, prefix: str = "") -> list[StoredObject]:
        """Every object under `prefix` with its last-modified time, on either backend."""
        found: list[StoredObject] = []
        async for batch in obstore.list(self._store, prefix=prefix or None):
            found.extend(
                StoredObject(item["path"], item["last_modified"], item["size"]) for item in batch
            )
        return found

    async def ping(self) -> None:
        """A cheap authenticated round trip: list at most one key."""
        stream = obstore.list(self._store, chunk_size=1)
        async for _batch in stream:
            break
