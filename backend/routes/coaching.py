"""/api/v1/coach/ask: the coach agent answers a question from the indexed code."""

from __future__ import annotations

from fastapi import APIRouter, Request

from backend import queue
from backend.deps import RuntimeDep
from backend.routes.snippets import ERRORS
from backend.schemas import AnswerOut, AskIn, CitationOut, Usage

router = APIRouter(prefix="/coach", tags=["coach"])


@router.post(
    "/ask",
    response_model=AnswerOut,
    responses=ERRORS,
    summary="Ask the coach; the answer cites the code it used",
)
async def ask(body: AskIn, request: Request, rt: RuntimeDep) -> AnswerOut:
    trace_id = getattr(request.state, "trace_id", None)
    answer = await queue.ask(
        body.question,
        snippet_id=str(body.snippet_id) if body.snippet_id else None,
        top_k=body.top_k,
        trace_id=trace_id,
        timeout=rt.settings.ask_timeout,
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
