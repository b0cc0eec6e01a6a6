"""Chunking, embeddings and the beat schedule: the pieces indexing and retrieval rest on."""

from __future__ import annotations

import math
import uuid

import pytest
from celery.schedules import crontab

from coach.chunking import chunk_text
from coach.embeddings import HashingEmbedder, tokens
from coach.settings import Settings
from worker.celery_app import app, celery_config
from worker.schedule import beat_schedule


def test_chunks_overlap_cover_every_line_and_have_stable_ids() -> None:
    sid = uuid.uuid4()
    text = "\n".join(f"line {i}" for i in range(1, 101))
    chunks = chunk_text(sid, text, lines=40, overlap=8, max_bytes=4096)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 40), (33, 72), (65, 100)]
    covered = {n for c in chunks for n in range(c.start_line, c.end_line + 1)}
    assert covered == set(range(1, 101))
    again = chunk_text(sid, text, lines=40, overlap=8, max_bytes=4096)
    assert [c.id for c in again] == [c.id for c in chunks], "retries must upsert the same ids"
    edited = chunk_text(
        sid, text.replace("line 50", "line fifty"), lines=40, overlap=8, max_bytes=4096
    )
    assert edited[0].id == chunks[0].id and edited[1].id != chunks[1].id


def test_no_chunk_passes_the_byte_cap_and_every_byte_is_kept_once() -> None:
    """Minified code or data on one line, and lines of multi-byte characters: windows shrink
    to what fits, a line over the cap is cut (never inside a character), ids stay stable."""
    sid = uuid.uuid4()
    minified = "x = [" + ", ".join(str(i) for i in range(3000)) + "]"  # 16.9 KB on one line
    euros = "€" * 400  # 1200 bytes: a cut at 1024 would split a 3-byte character
    lines = [f"line {i}" for i in range(1, 11)] + [minified, euros] + ["é" * 120] * 60
    text = "\n".join(lines)
    chunks = chunk_text(sid, text, lines=40, overlap=8, max_bytes=1024)

    assert chunks and max(len(c.text.encode()) for c in chunks) <= 1024
    assert (chunks[0].start_line, chunks[0].end_line) == (1, 10), "the lines before it fit"
    for number, line in ((11, minified), (12, euros)):
        pieces = [c.text for c in chunks if c.start_line == c.end_line == number]
        assert len(pieces) > 1 and "".join(pieces) == line
    rest = [c for c in chunks if c.start_line > 12]
    assert "\n".join(c.text for c in rest) == "\n".join(lines[12:]), "no line twice, none lost"
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    again = chunk_text(sid, text, lines=40, overlap=8, max_bytes=1024)
    assert [c.id for c in again] == [c.id for c in chunks]
    assert len({c.id for c in chunks}) == len(chunks)


def test_blank_windows_produce_no_chunk() -> None:
    assert chunk_text(uuid.uuid4(), "\n\n\n", lines=5, overlap=1, max_bytes=256) == []
    with pytest.raises(ValueError, match="overlap"):
        chunk_text(uuid.uuid4(), "x", lines=5, overlap=5, max_bytes=256)


def test_tokens_split_identifiers() -> None:
    assert tokens("parseHttpRequest(max_size)") == [
        "parsehttprequest",
        "parse",
        "http",
        "request",
        "max_size",
        "max",
        "size",
    ]


def test_hashing_embedder_is_deterministic_normalised_and_meaningful() -> None:
    embedder = HashingEmbedder(256)
    code, related, unrelated = embedder.embed(
        [
            "def fibonacci(n): a, b = b, a + b",
            "how does fibonacci work",
            "SELECT name FROM customers WHERE country = 'NZ'",
        ]
    )
    assert embedder.embed(["def fibonacci(n): a, b = b, a + b"])[0] == code
    assert math.isclose(sum(v * v for v in code), 1.0)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(code, related) > cosine(code, unrelated)
    assert embedder.embed(["   "])[0][0] == 1.0  # never the zero vector


def test_reliability_settings_follow_celery_advice() -> None:
    config = celery_config(Settings(redis_host="redis", task_time_limit=300))
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    timeouts = {
        config["broker_transport_options"]["visibility_timeout"],
        config["result_backend_transport_options"]["visibility_timeout"],
    }
    assert timeouts == {660}, "one visibility timeout, longer than the longest task"
    assert config["broker_url"] == "redis://redis:6379/0"


def test_an_ask_is_acked_on_receipt_and_never_redelivered_while_indexing_is() -> None:
    """A redelivered ask would pay for its LLM call again, for a request that gave up."""
    from worker.tasks import ask, index_snippet  # noqa: PLC0415

    assert ask.acks_late is False and ask.reject_on_worker_lost is False
    assert index_snippet.acks_late is True and index_snippet.reject_on_worker_lost is True


def test_beat_schedule_entries_are_crontabs_that_expire_and_name_real_tasks() -> None:
    schedule = beat_schedule(Settings())
    assert schedule, "an empty schedule fails silently"
    for name, entry in schedule.items():
        assert isinstance(entry["schedule"], crontab), name
        assert entry["options"]["expires"] > 0, name
        assert entry["task"] in app.tasks, f"{name} names unknown task {entry['task']}"
