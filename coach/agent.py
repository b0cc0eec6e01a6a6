"""The coach agent: retrieve → build prompt → generate, each step its own function so that
observability can wrap each one in a span of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from opentelemetry.trace import Span
from sqlalchemy import delete

from coach import snippets
from coach.db import session_scope
from coach.errors import InvalidInput, Unavailable
from coach.llm import Completion, Message
from coach.metrics import AGENT_STEP_DURATION, LLM_DURATION, LLM_REQUESTS, LLM_TOKENS
from coach.models import DEFAULT_TENANT, Question
from coach.runtime import Runtime
from coach.tracing import tracer
from coach.vectors import Hit

log = structlog.get_logger(__name__)

SYSTEM_PROMPT = (
    "You are a patient programming coach. Answer the learner's question using the code "
    "excerpts provided; cite excerpts as [n]. If the excerpts do not answer it, say so."
)


@dataclass(frozen=True)
class Citation:
    n: int
    snippet_id: uuid.UUID
    chunk_id: uuid.UUID
    title: str
    start_line: int
    end_line: int
    score: float


@dataclass
class Answer:
    id: uuid.UUID
    answer: str
    model: str
    citations: list[Citation]
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for the Celery result backend."""
        data = dataclasses.asdict(self)
        data["id"] = str(self.id)
        for citation in data["citations"]:
            citation["snippet_id"] = str(citation["snippet_id"])
            citation["chunk_id"] = str(citation["chunk_id"])
        return data


@contextmanager
def _step(name: str, attributes: dict[str, Any]) -> Iterator[Span]:
    """A span "coach.<name>" and a coach_agent_step_duration_seconds sample for one step."""
    started = time.perf_counter()
    with tracer.start_as_current_span(f"coach.{name}", attributes=attributes) as span:
        try:
            yield span
        finally:
            AGENT_STEP_DURATION.labels(step=name).observe(time.perf_counter() - started)


async def retrieve(
    rt: Runtime, question: str, *, top_k: int, tenant: str, snippet_id: uuid.UUID | None
) -> list[Hit]:
    """The nearest chunks among the tenant's snippets only: another tenant's code is never
    quoted to the LLM nor cited."""
    with _step("retrieve", {"coach.retrieve.top_k": top_k}) as span:
        span.set_attribute("coach.embedder", rt.embedder.name)
        if snippet_id is not None:
            span.set_attribute("coach.snippet_id", str(snippet_id))
        [vector] = await asyncio.to_thread(rt.embedder.embed, [question])
        await asyncio.to_thread(rt.vectors.ensure)
        hits = await asyncio.to_thread(
            rt.vectors.search, vector, top_k=top_k, tenant=tenant, snippet_id=snippet_id
        )
        # The search filtered by tenant already; this second look costs nothing.
        hits = [h for h in hits if h.payload.get("tenant", DEFAULT_TENANT) == tenant]
        span.set_attribute("coach.retrieve.hits", len(hits))
        return hits


def build_prompt(
    question: str, hits: list[Hit], *, max_bytes: int
) -> tuple[list[Message], list[Hit]]:
    """The messages, and the hits they quote: the best first, until the next excerpt would
    take the prompt over `max_bytes` (UTF-8) — what one call may cost, whatever top_k asks."""
    with _step("prompt", {"coach.prompt.hits": len(hits)}) as span:
        frame = f"Code excerpts:\n\n\nQuestion: {question}"  # the user message, bar excerpts
        size = len(SYSTEM_PROMPT.encode()) + len(frame.encode())
        excerpts: list[str] = []
        for n, h in enumerate(hits, start=1):
            excerpt = (
                f"[{n}] {h.payload.get('title', '')} lines {h.payload.get('start_line')}-"
                f"{h.payload.get('end_line')}:\n{h.payload.get('text', '')}"
            )
            size += len(excerpt.encode()) + (2 if excerpts else 0)  # "\n\n" between two
            if size > max_bytes:
                break
            excerpts.append(excerpt)
        body = "\n\n".join(excerpts) or "(none)"
        messages = [
            Message("system", SYSTEM_PROMPT),
            Message("user", f"Code excerpts:\n{body}\n\nQuestion: {question}"),
        ]
        span.set_attributes(
            {
                "coach.prompt.excerpts": len(excerpts),
                "coach.prompt.excerpts_dropped": len(hits) - len(excerpts),
                "coach.prompt.bytes": sum(len(m.content.encode()) for m in messages),
            }
        )
        return messages, hits[: len(excerpts)]


def check_deadline(deadline: float | None, step: str) -> None:
    """Unavailable, before `step`, once the API has stopped waiting: the work (and an LLM call
    it would pay for) is for nobody."""
    if deadline is not None and time.time() >= deadline:
        raise Unavailable(f"the question timed out before {step}; retry shortly")


async def generate(
    rt: Runtime, messages: list[Message], hits: list[Hit], *, deadline: float | None = None
) -> Completion:
    """The answer, with the llm_* metrics whichever provider answers (labelled with the
    configured model: a bounded label set). The API call itself is the `chat {model}` CLIENT
    span under this one, with the gen_ai.* attributes (coach.llm); the offline answerer has none."""
    model = rt.llm.model
    with _step(
        "generate", {"coach.llm.provider": rt.llm.provider, "coach.llm.model": model}
    ) as span:
        started, status = time.perf_counter(), "error"
        try:
            completion = await rt.llm.generate(
                messages, context=[str(h.payload.get("text", "")) for h in hits], deadline=deadline
            )
            status = "ok"
        finally:
            LLM_REQUESTS.labels(model=model, status=status).inc()
            LLM_DURATION.labels(model=model).observe(time.perf_counter() - started)
        LLM_TOKENS.labels(model=model, kind="prompt").inc(completion.prompt_tokens)
        LLM_TOKENS.labels(model=model, kind="completion").inc(completion.completion_tokens)
        span.set_attribute("coach.llm.response_model", completion.model)
        return completion


async def ask(
    rt: Runtime,
    question: str,
    *,
    top_k: int,
    snippet_id: uuid.UUID | None,
    tenant: str,
    api_key_id: uuid.UUID | None = None,
    trace_id: str | None = None,
    deadline: float | None = None,
) -> Answer:
    """`deadline`: Unix time the caller stops waiting at; nothing starts after it. The answer
    draws on `tenant`'s snippets only; the question row records the tenant and the key."""
    question = question.strip()
    if not question:
        raise InvalidInput("question is empty")
    if snippet_id is not None:
        # 404 for an unknown snippet (or another tenant's), not an empty answer
        await snippets.get(rt, snippet_id, tenant=tenant)
    started = time.perf_counter()
    check_deadline(deadline, "retrieval")
    found = await retrieve(rt, question, top_k=top_k, tenant=tenant, snippet_id=snippet_id)
    messages, hits = build_prompt(question, found, max_bytes=rt.settings.prompt_max_bytes)
    check_deadline(deadline, "the LLM call")
    completion = await generate(rt, messages, hits, deadline=deadline)
    latency_ms = int((time.perf_counter() - started) * 1000)
    citations = [
        Citation(
            n,
            h.snippet_id,
            h.chunk_id,
            str(h.payload.get("title", "")),
            int(h.payload.get("start_line", 0)),
            int(h.payload.get("end_line", 0)),
            round(h.score, 4),
        )
        for n, h in enumerate(hits, start=1)
    ]
    async with session_scope(rt.sessions) as session:
        row = Question(
            tenant=tenant,
            api_key_id=api_key_id,
            question=question,
            answer=completion.text,
            model=completion.model,
            snippet_id=snippet_id,
            citations=[
                {
                    "n": c.n,
                    "snippet_id": str(c.snippet_id),
                    "chunk_id": str(c.chunk_id),
                    "start_line": c.start_line,
                    "end_line": c.end_line,
                }
                for c in citations
            ],
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_ms=latency_ms,
            trace_id=trace_id,
        )
        session.add(row)
        await session.flush()
        question_id = row.id
    log.info(
        "question answered",
        question_id=str(question_id),
        tenant=tenant,
        model=completion.model,
        citations=len(citations),
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        latency_ms=latency_ms,
    )
    return Answer(
        question_id,
        completion.text,
        completion.model,
        citations,
        completion.prompt_tokens,
        completion.completion_tokens,
        latency_ms,
    )


async def purge_questions(rt: Runtime, *, older_than_days: int) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    async with session_scope(rt.sessions) as session:
        result = await session.execute(delete(Question).where(Question.created_at < cutoff))
    deleted = int(getattr(result, "rowcount", 0) or 0)
    log.info("questions purged", deleted=deleted, older_than_days=older_than_days)
    return deleted
