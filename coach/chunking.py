"""Split code into overlapping line windows of at most `max_bytes` each. Chunk ids derive from
the snippet, position and content, so re-indexing the same snippet upserts the same points
instead of adding new ones."""

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


def chunk_text(
    snippet_id: uuid.UUID, text: str, *, lines: int, overlap: int, max_bytes: int
) -> list[ChunkData]:
    """Windows of `lines` lines advancing by `lines - overlap`. A window over `max_bytes` keeps
    the lines that fit and the next starts after them (no overlap: long lines would otherwise
    repeat in chunk after chunk); a single line over it is cut into pieces, a chunk each, so
    no chunk, and no excerpt in a prompt, is ever larger (minified code, data on one line)."""
    if overlap >= lines:
        raise ValueError("overlap must be smaller than the window")
    all_lines = text.splitlines()
    chunks: list[ChunkData] = []

    def add(body: str, start_line: int, end_line: int) -> None:
        if not body.strip():
            return
        digest = hashlib.sha256(body.encode()).hexdigest()
        ordinal = len(chunks)
        chunks.append(
            ChunkData(
                id=uuid.uuid5(CHUNK_NAMESPACE, f"{snippet_id}:{ordinal}:{digest}"),
                ordinal=ordinal,
                text=body,
                start_line=start_line,
                end_line=end_line,
                content_hash=digest,
            )
        )

    start = 0
    while start < len(all_lines):
        window = all_lines[start : start + lines]
        fit = _lines_that_fit(window, max_bytes)
        if fit == 0:  # the first line alone is over the cap
            for piece in _cut(window[0], max_bytes):
                add(piece, start + 1, start + 1)
            start += 1
            continue
        add("\n".join(window[:fit]), start + 1, start + fit)
        if start + fit >= len(all_lines):
            break
        start += lines - overlap if fit == lines else fit
    return chunks


def _lines_that_fit(window: list[str], max_bytes: int) -> int:
    size = 0
    for n, line in enumerate(window):
        size += len(line.encode()) + (1 if n else 0)  # the newline joining it to the previous
        if size > max_bytes:
            return n
    return len(window)


def _cut(line: str, max_bytes: int) -> list[str]:
    """Pieces of at most `max_bytes` UTF-8 bytes, never cutting inside a character."""
    data = line.encode()
    pieces: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + max_bytes, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte
            end -= 1
        pieces.append(data[start:end].decode())
        start = end
    return pieces
