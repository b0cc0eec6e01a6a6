"""The adapters one process needs, built once from settings and closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from coach.db import make_engine, sessionmaker
from coach.embeddings import Embedder, make_embedder
from coach.llm import LLM, CachedProbe, make_llm
from coach.objects import ObjectStore
from coach.settings import Settings
from coach.vectors import VectorStore


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    objects: ObjectStore
    vectors: VectorStore
    embedder: Embedder
    llm: LLM
    llm_probe: CachedProbe
    redis: Redis | None

    @classmethod
    def create(cls, settings: Settings, *, pooled: bool = True) -> Runtime:
        engine = make_engine(settings, pooled=pooled)
        llm = make_llm(settings)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessionmaker(engine),
            objects=ObjectStore(settings),
            vectors=VectorStore(settings),
            embedder=make_embedder(settings),
            llm=llm,
            llm_probe=CachedProbe(llm, settings.llm_health_cache_seconds),
            redis=Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            if settings.redis_url
            else None,
        )

    async def close(self) -> None:
        await self.engine.dispose()
        if self.redis is not None:
            await self.redis.aclose()
