"""/api/v1/snippets: upload (JSON or multipart), list, read, stream content."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from backend import queue
from backend.auth import ReadKey, WriteKey
from backend.deps import RuntimeDep
from backend.schemas import (
    ErrorOut,
    SnippetAccepted,
    SnippetIn,
    SnippetOut,
    SnippetPage,
    UploadFields,
)
from coach import snippets
from coach.errors import InvalidInput, PayloadTooLarge
from coach.metrics import SNIPPETS_INGESTED

router = APIRouter(prefix="/snippets", tags=["snippets"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (404, 413, 415, 422, 503)
}
MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["title", "language", "file"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "language": SnippetIn.model_json_schema()["properties"]["language"],
        "file": {"type": "string", "format": "binary"},
    },
}


def _invalid(exc: ValidationError) -> InvalidInput:
    errors = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False)
    ]
    return InvalidInput(str(errors))


async def _read_upload(request: Request, max_bytes: int) -> tuple[str, str, bytes]:
    """(title, language, raw bytes) from a JSON or multipart body, with the size limit
    enforced before the body is buffered whole."""
    declared = request.headers.get("content-length")
    overhead = 64 * 1024  # JSON escaping, multipart boundaries and the other fields
    if declared and declared.isdigit() and int(declared) > 2 * max_bytes + overhead:
        raise PayloadTooLarge(f"request body is {declared} bytes; the snippet limit is {max_bytes}")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = SnippetIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _invalid(exc) from exc
        return body.title, body.language, body.content.encode("utf-8")
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=4, max_part_size=max_bytes + 1)
        upload, title, language = form.get("file"), form.get("title"), form.get("language")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("multipart upload needs a 'file' part")
        try:  # the same rules as the JSON fields
            fields = UploadFields.model_validate({"title": title, "language": language})
        except ValidationError as exc:
            raise _invalid(exc) from exc
        raw = await upload.read(max_bytes + 1)
        return fields.title, fields.language, raw
    raise InvalidInput("send application/json or multipart/form-data")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SnippetAccepted,
    responses=ERRORS,
    summary="Upload a code snippet; indexing runs in the background",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SnippetIn.model_json_schema()},
                "multipart/form-data": {"schema": MULTIPART_SCHEMA},
            },
        }
    },
)
async def create_snippet(request: Request, rt: RuntimeDep, key: WriteKey) -> SnippetAccepted:
    title, language, raw = await _read_upload(request, rt.settings.max_snippet_bytes)
    snippet = await snippets.create(rt, tenant=key.tenant, title=title, language=language, raw=raw)
    try:
        task_id = await queue.index_snippet(str(snippet.id))
    except BaseException:
        await snippets.discard(rt, snippet)  # a failed upload changes nothing
        raise
    await snippets.set_task(rt, sid=snippet.id, task_id=task_id)
    SNIPPETS_INGESTED.inc()
    current = await snippets.get(rt, snippet.id, tenant=key.tenant)
    return SnippetAccepted(id=snippet.id, task_id=task_id, status=current.status)


@router.get("", response_model=SnippetPage, responses=ERRORS, summary="List snippets")
async def list_snippets(
    rt: RuntimeDep,
    key: ReadKey,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> SnippetPage:
    rows, total = await snippets.page(rt, tenant=key.tenant, limit=limit, offset=offset)
    return SnippetPage(
        items=[SnippetOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{snippet_id}", response_model=SnippetOut, responses=ERRORS, summary="One snippet")
async def get_snippet(snippet_id: uuid.UUID, rt: RuntimeDep, key: ReadKey) -> SnippetOut:
    return SnippetOut.model_validate(await snippets.get(rt, snippet_id, tenant=key.tenant))


@router.get(
    "/{snippet_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}, **ERRORS},
    summary="The snippet's source, streamed from the object store",
)
async def get_content(snippet_id: uuid.UUID, rt: RuntimeDep, key: ReadKey) -> StreamingResponse:
    snippet = await snippets.get(rt, snippet_id, tenant=key.tenant)
    return StreamingResponse(
        rt.objects.stream(snippet.object_key),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Length": str(snippet.size_bytes), "ETag": f'"{snippet.sha256}"'},
    )
