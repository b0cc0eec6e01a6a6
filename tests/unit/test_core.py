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
    chunks = chunk_text(sid, text, lines=40, overlap=8)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 40), (33, 72), (65, 100)]
    covered = {n for c in chunks for n in range(c.start_line, c.end_line + 1)}
    assert covered == set(range(1, 101))
    again = chunk_text(sid, text, lines=40, overlap=8)
    assert [c.id for c in again] == [c.id for c in chunks], "retries must upsert the same ids"
    edited = chunk_text(sid, text.replace("line 50", "line fifty"), lines=40, overlap=8)
    assert edited[0].id == chunks[0].id and edited[1].id != chunks[1].id


def test_blank_windows_produce_no_chunk() -> None:
    assert chunk_text(uuid.uuid4(), "\n\n\n", lines=5, overlap=1) == []
    with pytest.raises(ValueError, match="overlap"):
        chunk_text(uuid.uuid4(), "x", lines=5, overlap=5)


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


def test_beat_schedule_entries_are_crontabs_that_expire_and_name_real_tasks() -> None:
    schedule = beat_schedule(Settings())
    assert schedule, "an empty schedule fails silently"
    for name, entry in schedule.items():
        assert isinstance(entry["schedule"], crontab), name
        assert entry["options"]["expires"] > 0, name
        assert entry["task"] in app.tasks, f"{name} names unknown task {entry['task']}"
