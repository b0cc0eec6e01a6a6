"""The LLM behind the coach: an OpenAI-compatible chat completions API over httpx, or an
offline extractive provider that answers from the retrieved chunks (no key needed)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from coach.embeddings import tokens
from coach.settings import Settings


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int


class LLMError(RuntimeError):
    """The provider failed after retries, or refused the request."""


class LLM(Protocol):
    system: str  # gen_ai.system: "openai" for any OpenAI-compatible API, else "extractive"
    model: str

    async def generate(self, messages: list[Message], *, context: list[str]) -> Completion: ...

    def probe(self) -> None: ...


RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


class OpenAIChat:
    system = "openai"

    def __init__(self, settings: Settings) -> None:
        assert settings.llm_base_url is not None
        self.model = settings.llm_model
        self._base_url = settings.llm_base_url
        self._headers = {"Authorization": f"Bearer {settings.llm_api_key.get_secret_value()}"}
        self._timeout = settings.llm_timeout
        self._retries = settings.llm_max_retries

    async def generate(self, messages: list[Message], *, context: list[str]) -> Completion:
        payload = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": 0.2,
        }
        last: Exception | None = None
        async with httpx.AsyncClient(
            base_url=self._base_url, headers=self._headers, timeout=self._timeout
        ) as client:
            for attempt in range(self._retries + 1):
                try:
                    response = await client.post("/chat/completions", json=payload)
                except httpx.TransportError as exc:
                    last = exc
                else:
                    if response.status_code == 200:
                        return self._parse(response.json())
                    if response.status_code not in RETRYABLE:
                        raise LLMError(
                            f"LLM API answered {response.status_code}: {response.text[:200]}"
                        )
                    last = LLMError(f"LLM API answered {response.status_code}")
                if attempt < self._retries:
                    await asyncio.sleep(min(2.0, 0.2 * 2**attempt) * (1 + random.random()))  # noqa: S311
        raise LLMError(f"LLM API unavailable after {self._retries + 1} attempts: {last}")

    def _parse(self, body: Any) -> Completion:
        try:
            usage = body.get("usage") or {}
            return Completion(
                text=str(body["choices"][0]["message"]["content"]),
                model=str(body.get("model") or self.model),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LLMError(f"unexpected LLM API response: {exc!r}") from exc

    def probe(self) -> None:
        """GET /models: reachable and the key accepted. Raises LLMError otherwise."""
        try:
            response = httpx.get(
                f"{self._base_url}/models", headers=self._headers, timeout=min(self._timeout, 5.0)
            )
        except httpx.TransportError as exc:
            raise LLMError(f"LLM API unreachable: {exc}") from exc
        if response.status_code != 200:
            raise LLMError(f"LLM API answered {response.status_code} to GET /models")


class ExtractiveLLM:
    """Answers with the context lines that share the most words with the question."""

    system = "extractive"
    model = "extractive-v1"

    async def generate(self, messages: list[Message], *, context: list[str]) -> Completion:
        question = messages[-1].content
        wanted = set(tokens(question))
        scored: list[tuple[int, int, str]] = []
        for block in context:
            for position, line in enumerate(block.splitlines()):
                overlap = len(wanted & set(tokens(line)))
                if overlap and line.strip():
                    scored.append((overlap, -position, line.rstrip()))
        best = [line for _, _, line in sorted(scored, reverse=True)[:5]]
        if best:
            text = "The most relevant lines in your code:\n" + "\n".join(best)
        else:
            text = "I found no code related to that question in the indexed snippets."
        prompt_tokens = sum(len(m.content.split()) for m in messages)
        return Completion(text, self.model, prompt_tokens, len(text.split()))

    def probe(self) -> None:
        return None


class CachedProbe:
    """Health checks call the provider at most once per `ttl` seconds, whatever the probe rate."""

    def __init__(self, llm: LLM, ttl: float) -> None:
        self._llm, self._ttl = llm, ttl
        self._at = float("-inf")
        self._error: str | None = None

    def check(self) -> tuple[str | None, bool]:
        """(error or None, served from cache)."""
        now = time.monotonic()
        if now - self._at < self._ttl:
            return self._error, True
        try:
            self._llm.probe()
            self._error = None
        except LLMError as exc:
            self._error = str(exc)
        self._at = time.monotonic()
        return self._error, False


def make_llm(settings: Settings) -> LLM:
    if settings.llm_provider == "openai":
        return OpenAIChat(settings)
    return ExtractiveLLM()
