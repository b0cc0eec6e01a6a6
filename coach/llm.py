"""The LLM behind the coach: an OpenAI-compatible chat completions API over httpx, or an
offline extractive provider that answers from the retrieved chunks (no key needed).

Each API call is a CLIENT span `chat {model}` after the OpenTelemetry GenAI conventions, with
the gen_ai.client.* histograms; no prompt or answer text in either (learners' code and
questions). The extractive answerer makes neither: it is no model and calls nothing, and its
word counts are no tokens to put beside billed ones.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from coach import tracing
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
    """The provider failed after retries, or refused the request. `error_type` is the span's
    and the duration metric's error.type: the HTTP status, else the exception's class."""

    def __init__(self, message: str, *, error_type: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type or _qualified(self)


class LLM(Protocol):
    provider: str  # gen_ai.provider.name for an API (LLM_PROVIDER_NAME), else "extractive"
    model: str

    async def generate(
        self, messages: list[Message], *, context: list[str], deadline: float | None = None
    ) -> Completion:
        """`deadline`: Unix time after which nobody waits for the answer any more; no attempt
        starts after it, and none outlasts it."""
        ...

    def probe(self) -> None: ...


RETRYABLE = {408, 409, 429, 500, 502, 503, 504}
TEMPERATURE = 0.2
DEADLINE_EXCEEDED = "deadline_exceeded"  # error.type when the deadline ends the retries
# No LLM answers sooner than this: an attempt with less time left before the deadline would be
# paid for and abandoned, and would reach the API after the deadline on a busy host.
MIN_ATTEMPT_SECONDS = 0.1


def _qualified(exc: BaseException) -> str:
    """error.type for an exception: its fully qualified class name, as the conventions ask."""
    cls = type(exc)
    name = cls.__qualname__
    return name if cls.__module__ == "builtins" else f"{cls.__module__}.{name}"


@dataclass(frozen=True)
class _Response:
    completion: Completion
    attributes: dict[str, AttributeValue]  # gen_ai.response.* for the span
    usage: bool  # the API counted the tokens (else 0s, which no usage metric may report)


class OpenAIChat:
    def __init__(self, settings: Settings) -> None:
        assert settings.llm_base_url is not None
        self.provider = settings.llm_provider_name
        self.model = settings.llm_model
        self._base_url = settings.llm_base_url
        self._headers = {"Authorization": f"Bearer {settings.llm_api_key.get_secret_value()}"}
        self._timeout = settings.llm_timeout
        self._retries = settings.llm_max_retries
        self._max_tokens = settings.llm_max_tokens
        url = httpx.URL(settings.llm_base_url)
        # Span and metric attributes alike; the metrics' stay low-cardinality (no response id).
        self._attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": self.provider,
            "gen_ai.request.model": self.model,
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }

    async def generate(
        self, messages: list[Message], *, context: list[str], deadline: float | None = None
    ) -> Completion:
        """One logical call, retries included, as the conventions' span and duration cover."""
        metrics = tracing.genai_metrics()
        started = time.perf_counter()
        with tracing.tracer.start_as_current_span(
            f"chat {self.model}",
            kind=SpanKind.CLIENT,
            attributes=self._attributes
            | {
                "gen_ai.request.temperature": TEMPERATURE,
                "gen_ai.request.max_tokens": self._max_tokens,
            },
        ) as span:
            try:
                response = await self._call(messages, deadline)
            except BaseException as exc:  # cancelled or timed out too: the call ended unanswered
                # The span's ERROR status and exception event: the SDK's, as the span ends.
                error_type = exc.error_type if isinstance(exc, LLMError) else _qualified(exc)
                span.set_attribute("error.type", error_type)
                metrics.operation_duration.record(
                    time.perf_counter() - started, self._attributes | {"error.type": error_type}
                )
                raise
            completion = response.completion
            span.set_attributes(response.attributes)
            measured = self._attributes | {"gen_ai.response.model": completion.model}
            metrics.operation_duration.record(time.perf_counter() - started, measured)
            if response.usage:
                span.set_attributes(
                    {
                        "gen_ai.usage.input_tokens": completion.prompt_tokens,
                        "gen_ai.usage.output_tokens": completion.completion_tokens,
                    }
                )
                for kind, count in (
                    ("input", completion.prompt_tokens),
                    ("output", completion.completion_tokens),
                ):
                    metrics.token_usage.record(count, measured | {"gen_ai.token.type": kind})
            return completion

    async def _call(self, messages: list[Message], deadline: float | None) -> _Response:
        payload = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": TEMPERATURE,
            "max_tokens": self._max_tokens,  # what one answer may cost, at most
        }
        last: Exception | None = None
        attempts = 0
        async with httpx.AsyncClient(
            base_url=self._base_url, headers=self._headers, timeout=self._timeout
        ) as client:
            for attempt in range(self._retries + 1):
                timeout = self._timeout
                if deadline is not None:
                    # Nobody waits past the deadline: an attempt then is paid for nothing.
                    timeout = min(timeout, deadline - time.time())
                    if timeout < MIN_ATTEMPT_SECONDS:
                        break
                attempts += 1
                try:
                    response = await client.post("/chat/completions", json=payload, timeout=timeout)
                except httpx.TransportError as exc:
                    last = exc
                else:
                    status = str(response.status_code)
                    if response.status_code == 200:
                        return self._parse(response)
                    if response.status_code not in RETRYABLE:
                        raise LLMError(
                            f"LLM API answered {status}: {response.text[:200]}", error_type=status
                        )
                    last = LLMError(f"LLM API answered {status}", error_type=status)
                if attempt < self._retries:
                    pause = min(2.0, 0.2 * 2**attempt) * (1 + random.random())  # noqa: S311
                    if (
                        deadline is not None
                        and time.time() + pause + MIN_ATTEMPT_SECONDS >= deadline
                    ):
                        break  # the next attempt would start too late to be answered
                    await asyncio.sleep(pause)
        if last is None:  # the deadline had passed before the first attempt
            raise LLMError(
                "the deadline passed before the LLM API was called", error_type=DEADLINE_EXCEEDED
            )
        raise LLMError(
            f"LLM API unavailable after {attempts} attempt(s): {last}",
            error_type=last.error_type if isinstance(last, LLMError) else _qualified(last),
        )

    def _parse(self, response: httpx.Response) -> _Response:
        try:
            body: Any = response.json()
            usage = body.get("usage")
            counts = usage or {}
            completion = Completion(
                text=str(body["choices"][0]["message"]["content"]),
                model=str(body.get("model") or self.model),
                prompt_tokens=int(counts.get("prompt_tokens", 0)),
                completion_tokens=int(counts.get("completion_tokens", 0)),
            )
            reasons = [str(c["finish_reason"]) for c in body["choices"] if c.get("finish_reason")]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise LLMError(
                f"unexpected LLM API response: {exc!r}", error_type="invalid_response"
            ) from exc
        attributes: dict[str, AttributeValue] = {"gen_ai.response.model": completion.model}
        if body.get("id"):
            attributes["gen_ai.response.id"] = str(body["id"])
        if reasons:
            attributes["gen_ai.response.finish_reasons"] = reasons
        return _Response(completion, attributes, usage=isinstance(usage, dict))

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

    provider = "extractive"
    model = "extractive-v1"

    async def generate(
        self, messages: list[Message], *, context: list[str], deadline: float | None = None
    ) -> Completion:
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
