"""Text → vectors. The default needs nothing downloaded: a deterministic feature-hashing
embedder over code-aware tokens. An OpenAI-compatible /v1/embeddings endpoint is the other."""

from __future__ import annotations

import hashlib
import itertools
import re
from typing import Protocol

import httpx
import numpy as np

from coach.settings import Settings

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class Embedder(Protocol):
    dim: int
    name: str

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def tokens(text: str) -> list[str]:
    """Identifiers and their parts: `parseHttpRequest` → parsehttprequest, parse, http, request."""
    return [token for word in _TOKEN.findall(text) for token in _word_tokens(word)]


def _word_tokens(word: str) -> list[str]:
    lowered = word.lower()
    parts = [p.lower() for p in _CAMEL.sub("_", word).split("_") if p]
    return [lowered, *parts] if len(parts) > 1 else [lowered]


class HashingEmbedder:
    """Each token adds ±1 to one of `dim` slots (both from its blake2b digest); the counts are
    then scaled to unit length.

    Vectorised: a word's slots are hashed once and remembered (code repeats its identifiers),
    a whole batch is counted in one `numpy.bincount`, and the counts are normalised together.
    The result is bit for bit what adding floats one token at a time gives: the counts are
    small integers, exact in float64 in any order, and the square root and the division are
    correctly rounded IEEE operations either way. Questions and chunks must embed alike.
    """

    name = "hashing"
    WORD_CACHE = 1 << 16  # distinct words remembered; cleared when full (a few MB at most)

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._codes: dict[str, tuple[int, ...]] = {}

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        words = [_TOKEN.findall(text) for text in texts]
        codes = self._codes
        missing = {w for text_words in words for w in text_words if w not in codes}
        if len(codes) + len(missing) > self.WORD_CACHE:
            codes.clear()  # then every word of this batch is hashed again
            missing = {w for text_words in words for w in text_words}
        codes.update((w, self._word_codes(w)) for w in missing)
        per_text = [list(itertools.chain.from_iterable(map(codes.__getitem__, ws))) for ws in words]
        flat = np.fromiter(itertools.chain.from_iterable(per_text), dtype=np.int64)
        rows = np.repeat(np.arange(len(texts)), [len(c) for c in per_text])
        negative = flat >= self.dim  # a code is the slot, plus dim where the token subtracts
        cells = rows * self.dim + np.where(negative, flat - self.dim, flat)
        counts = np.bincount(
            cells, weights=np.where(negative, -1.0, 1.0), minlength=len(texts) * self.dim
        ).reshape(len(texts), self.dim)
        norms = np.sqrt((counts * counts).sum(axis=1))
        empty = norms == 0
        counts[empty, 0] = 1.0  # Qdrant's cosine distance rejects the zero vector
        norms[empty] = 1.0
        vectors: list[list[float]] = (counts / norms[:, None]).tolist()
        return vectors

    def _word_codes(self, word: str) -> tuple[int, ...]:
        out = []
        for token in _word_tokens(word):
            digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dim
            out.append(index if digest[4] & 1 else index + self.dim)
        return tuple(out)


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
