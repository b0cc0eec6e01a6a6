"""Split code into overlapping line windows. Chunk ids derive from the snippet, position and
content, so re-indexing the same snippet upserts the same points instead of adding new ones."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

CHUNK_NAMESPACE = uuid.UUID("6f1c2a4e-9d55-4c7b-8a43-0c8d2f6b7e11")


@dataclass(frozen=True)
class ChunkData:
    id: uuid.UUID
    ordinal: int
    text: str
    start_line: int  # 1-based, inclusive
    end_line: int
    content_hash: str


def chunk_text(snippet_id: uuid.UUID, text: str, *, lines: int, overlap: int) -> list[ChunkData]:
    if overlap >= lines:
        raise ValueError("overlap must be smaller than the window")
    all_lines = text.splitlines()
    chunks: list[ChunkData] = []
    step = lines - overlap
    start = 0
    while start < len(all_lines):
        window = all_lines[start : start + lines]
        body = "\n".join(window)
        if body.strip():
            digest = hashlib.sha256(body.encode()).hexdigest()
            ordinal = len(chunks)
            chunks.append(
                ChunkData(
                    id=uuid.uuid5(CHUNK_NAMESPACE, f"{snippet_id}:{ordinal}:{digest}"),
                    ordinal=ordinal,
                    text=body,
                    start_line=start + 1,
                    end_line=start + len(window),
                    content_hash=digest,
                )
            )
        if start + lines >= len(all_lines):
            break
        start += step
    return chunks
