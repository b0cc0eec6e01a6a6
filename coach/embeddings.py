"""Text → vectors. The default needs nothing downloaded: a deterministic feature-hashing
embedder over code-aware tokens. An OpenAI-compatible /v1/embeddings endpoint is the other."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Protocol

import httpx

from coach.settings import Settings

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class Embedder(Protocol):
    dim: int
    name: str

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def tokens(text: str) -> list[str]:
    """Identifiers and their parts: `parseHttpRequest` → parsehttprequest, parse, http, request."""
    out: list[str] = []
    for word in _TOKEN.findall(text):
        lowered = word.lower()
        out.append(lowered)
        parts = [p.lower() for p in _CAMEL.sub("_", word).split("_") if p]
        if len(parts) > 1:
            out.extend(parts)
    return out


class HashingEmbedder:
    name = "hashing"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self._one(text) for text in texts]

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for token in tokens(text):
            digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dim
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vector))
        if norm == 0:
            vector[0] = 1.0  # Qdrant's cosine distance rejects the zero vector
            return vector
        return [v / norm for v in vector]


class OpenAIEmbedder:
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        if not settings.llm_base_url:
            raise ValueError("EMBEDDING_PROVIDER=openai needs LLM_BASE_URL")
        self.dim = settings.embedding_dim
        self._model = settings.embedding_model
        self._client = httpx.Client(
            base_url=settings.llm_base_url,
            timeout=settings.llm_timeout,
            headers={"Authorization": f"Bearer {settings.llm_api_key.get_secret_value()}"},
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        response = self._client.post(
            "/embeddings", json={"model": self._model, "input": texts, "dimensions": self.dim}
        )
        response.raise_for_status()
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        return [item["embedding"] for item in data]


def make_embedder(settings: Settings) -> Embedder:
    if settings.embedding_provider == "openai":
        return OpenAIEmbedder(settings)
    return HashingEmbedder(settings.embedding_dim)
