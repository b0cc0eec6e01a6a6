"""The daily token budget of each API key (DAILY_TOKEN_BUDGET): what its questions of the
current UTC day used, prompt and completion, read from the questions table before an ask is
enqueued. Asks already running when it is reached still finish, so a key may pass it by what
those use (at most ASK_MAX_WAITING asks per backend process, each capped by PROMPT_MAX_BYTES
and LLM_MAX_TOKENS)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, select

from coach.errors import TooManyRequests
from coach.metrics import LLM_BUDGET_EXHAUSTED
from coach.models import Question
from coach.runtime import Runtime
from coach.settings import Settings

log = structlog.get_logger(__name__)
DAY = timedelta(days=1)


def now(settings: Settings) -> datetime:
    """The budget's clock: UTC, shifted by CLOCK_OFFSET_SECONDS (tests and drills only)."""
    return datetime.now(UTC) + timedelta(seconds=settings.clock_offset_seconds)


def today(settings: Settings) -> tuple[datetime, datetime]:
    """The current UTC day: [midnight, next midnight)."""
    start = now(settings).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + DAY


async def spent_today(rt: Runtime, key_id: uuid.UUID) -> int:
    start, end = today(rt.settings)
    used = func.coalesce(func.sum(Question.prompt_tokens + Question.completion_tokens), 0)
    async with rt.sessions() as session:
        total = await session.scalar(
            select(used).where(
                Question.api_key_id == key_id,
                Question.created_at >= start,
                Question.created_at < end,
            )
        )
    return int(total or 0)


async def check(rt: Runtime, key_id: uuid.UUID) -> None:
    """TooManyRequests (429, Retry-After: the seconds to the next UTC midnight) once the key
    has used its budget today; nothing with DAILY_TOKEN_BUDGET=0."""
    budget = rt.settings.daily_token_budget
    if budget == 0:
        return
    spent = await spent_today(rt, key_id)
    if spent < budget:
        return
    LLM_BUDGET_EXHAUSTED.inc()
    _, end = today(rt.settings)
    retry_after = max(1, math.ceil((end - now(rt.settings)).total_seconds()))
    log.warning("daily token budget spent", key_id=str(key_id), spent=spent, budget=budget)
    raise TooManyRequests(
        f"this API key has used its daily budget of {budget} LLM tokens ({spent} used); "
        "it renews at 00:00 UTC",
        headers={"Retry-After": str(retry_after)},
    )
