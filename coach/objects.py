"""Snippet content in an object store: any S3 endpoint through obstore, or a local directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import obstore
from obstore.store import LocalStore, S3Store

from coach.settings import Settings


class ObjectStore:
    def __init__(self, settings: Settings) -> None:
        self.kind: str
        self._store: Any
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

    async def put(self, key: str, data: bytes, content_type: str = "text/plain") -> None:
        attributes = {"Content-Type": content_type} if self.kind == "s3" else None
        await obstore.put_async(self._store, key, data, attributes=attributes)

    def get(self, key: str) -> bytes:
        return bytes(obstore.get(self._store, key).bytes())

    async def get_async(self, key: str) -> bytes:
        result = await obstore.get_async(self._store, key)
        return bytes(await result.bytes_async())

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        result = await obstore.get_async(self._store, key)
        async for chunk in result.stream(min_chunk_size=64 * 1024):
            yield bytes(chunk)

    async def delete(self, key: str) -> None:
        await obstore.delete_async(self._store, key)

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self._store, key)
        except FileNotFoundError:
            return False
        return True

    async def keys(self, prefix: str = "") -> list[str]:
        found: list[str] = []
        async for batch in obstore.list(self._store, prefix=prefix or None):
            found.extend(item["path"] for item in batch)
        return found

    async def ping(self) -> None:
        """A cheap authenticated round trip: list at most one key."""
        stream = obstore.list(self._store, chunk_size=1)
        async for _batch in stream:
            break
