"""Request and response models; their limits are the API's contract (see /openapi.json)."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from coach.settings import LANGUAGES
from coach.text import LINE_BREAKS_AND_TABS, SOURCE_WHITESPACE, refuse_controls

Language = Literal[LANGUAGES]  # type: ignore[valid-type]
# Every string a client sends goes through one of these (coach.text): a control character is
# a 422 before anything is stored or paid for. One line: none at all; text: tabs and line
# breaks; source code: form feeds too.
OneLine = Annotated[str, AfterValidator(refuse_controls)]
Text = Annotated[str, AfterValidator(partial(refuse_controls, allowed=LINE_BREAKS_AND_TABS))]
Source = Annotated[str, AfterValidator(partial(refuse_controls, allowed=SOURCE_WHITESPACE))]


class UploadFields(BaseModel):
    """What an upload says about its snippet, as JSON fields or multipart form fields."""

    model_config = ConfigDict(extra="forbid")

    title: OneLine = Field(min_length=1, max_length=200)
    language: Language


class SnippetIn(UploadFields):
    content: Source = Field(min_length=1, description="UTF-8 source text (size limit applies)")


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

    question: Text = Field(min_length=1, max_length=2000)
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
    """Name and status for everyone; latency, error and cache only on the internal network
    (backend/routes/health.py)."""

    model_config = ConfigDict(from_attributes=True)  # built from coach.health.Check
    status: str
    latency_ms: float | None = None
    critical: bool
    error: str | None = None
    cached: bool | None = None


class HealthOut(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    reason: str | None = Field(
        default=None,
        description="why degraded whatever the checks say, e.g. 'local stores: vectors, "
        "objects' (internal network only)",
    )
    version: str | None = Field(default=None, description="internal network only")
    environment: str | None = Field(default=None, description="internal network only")
    checks: dict[str, CheckOut]


class ErrorOut(BaseModel):
    error: str
    detail: Any
    request_id: str | None
    trace_id: str | None
