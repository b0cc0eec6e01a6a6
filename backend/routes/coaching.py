"""/api/v1/coach/ask: the coach agent answers a question from the indexed code."""

from __future__ import annotations

from fastapi import APIRouter, Request

from backend import queue
from backend.auth import WriteKey
from backend.deps import AskGateDep, RuntimeDep
from backend.routes.snippets import ERRORS
from backend.schemas import AnswerOut, AskIn, CitationOut, ErrorOut, Usage
from coach import budget

router = APIRouter(prefix="/coach", tags=["coach"])
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
ASK_ERRORS = ERRORS | {
    429: {
        "model": ErrorOut,
        "description": "The API key's daily token budget is spent until 00:00 UTC",
        "headers": RETRY_AFTER,
    },
    503: {
        "model": ErrorOut,
        "description": "A dependency is down, or this backend waits for as many answers as it may",
        "headers": RETRY_AFTER,
    },
}


@router.post(
    "/ask",
    response_model=AnswerOut,
    responses=ASK_ERRORS,
    summary="Ask the coach; the answer cites the code it used",
)
async def ask(
    body: AskIn, request: Request, rt: RuntimeDep, gate: AskGateDep, key: WriteKey
) -> AnswerOut:
    trace_id = getattr(request.state, "trace_id", None)
    await budget.check(rt, key.key_id)  # before anything is paid for
    answer = await queue.ask(
        body.question,
        snippet_id=str(body.snippet_id) if body.snippet_id else None,
        top_k=body.top_k,
        trace_id=trace_id,
        timeout=rt.settings.ask_timeout,
        gate=gate,
        tenant=key.tenant,
        api_key_id=str(key.key_id),
    )
    return AnswerOut(
        id=answer["id"],
        answer=answer["answer"],
        model=answer["model"],
        citations=[CitationOut(**c) for c in answer["citations"]],
        usage=Usage(
            prompt_tokens=answer["prompt_tokens"], completion_tokens=answer["completion_tokens"]
        ),
        latency_ms=answer["latency_ms"],
        trace_id=trace_id,
    )
