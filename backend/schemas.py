"""Request and response models; their limits are the API's contract (see /openapi.json)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coach.settings import LANGUAGES

Language = Literal[LANGUAGES]  # type: ignore[valid-type]


class SnippetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    language: Language
    content: str = Field(min_length=1, description="UTF-8 source text (size limit applies)")


class SnippetAccepted(BaseModel):
    id: uuid.UUID
    task_id: str
    status: str


class SnippetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    language: str
    sha256: str
    size_bytes: int
    status: str
    error: str | None
    chunk_count: int
    task_id: str | None
    created_at: datetime
    updated_at: datetime


class SnippetPage(BaseModel):
    items: list[SnippetOut]
    total: int
    limit: int
    offset: int


class AskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000)
    snippet_id: uuid.UUID | None = None
    top_k: int = Field(default=5, ge=1, le=20)


class CitationOut(BaseModel):
    n: int
    snippet_id: uuid.UUID
    chunk_id: uuid.UUID
    title: str
    start_line: int
    end_line: int
    score: float


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class AnswerOut(BaseModel):
    id: uuid.UUID
    answer: str
    model: str
    citations: list[CitationOut]
    usage: Usage
    latency_ms: int
    trace_id: str | None


class TaskOut(BaseModel):
    id: str
    state: str
    result: Any | None = None
    error: str | None = None


class CheckOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from coach.health.Check
    status: str
    latency_ms: float
    critical: bool
    error: str | None = None
    cached: bool = False


class HealthOut(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    version: str
    environment: str
    checks: dict[str, CheckOut]


class ErrorOut(BaseModel):
    error: str
    detail: Any
    request_id: str | None
    trace_id: str | None
