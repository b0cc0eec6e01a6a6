"""Reindex against the running app: searches issued all through the rebuild never come back
empty, the swap leaves exactly one collection with one point per chunk, and a run interrupted
after its first batch is finished by the next one, into the same collection."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from coach.reindexing import MARKER_ID, REINDEX_LOCK_KEY, ReindexBusy, ReindexProgress
from coach.vectors import VectorStore
from ops.data.reindex import reindex
from ops.data.target import settings_from_env
from tests.support.ops_target import dsn, postgres_container_id, table_rows
from tests.support.processes import ROOT, wait_until
from tests.support.stack import Stack

INVOKE = Path(sys.executable).parent / "invoke"


@dataclass(frozen=True)
class Search:
    at: float
    status: int
    citations: int


class Searcher(threading.Thread):
    """Asks about each snippet in turn, bounded, until told to stop."""

    def __init__(self, stack: Stack, snippet_ids: list[str], limit: int = 2000) -> None:
        super().__init__(daemon=True)
        self.stack, self.snippet_ids, self.limit = stack, snippet_ids, limit
        self.results: list[Search] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with self.stack.client(timeout=30) as http:
            for n in range(self.limit):
                if self.halt.is_set():
                    return
                response = http.post(
                    "/api/v1/coach/ask",
                    json={
                        "question": "what does step do?",
                        "snippet_id": self.snippet_ids[n % len(self.snippet_ids)],
                    },
                )
                cited = len(response.json().get("citations", [])) if response.is_success else 0
                self.results.append(Search(time.monotonic(), response.status_code, cited))

    def after(self, count: int, seconds: float = 30) -> None:
        """Block until `count` more searches have completed."""
        target = len(self.results) + count
        wait_until(lambda: len(self.results) >= target, seconds=seconds, what="searches")


def _snippets(stack: Stack, count: int, tag: str) -> list[str]:
    lines = "\n".join(f"def {tag}_step_{i}(state):\n    return state + {i}" for i in range(90))
    ids = [stack.upload(f"{tag}{n}.py", f"# {tag} {n}\n{lines}")["id"] for n in range(count)]
    for sid in ids:
        stack.wait_indexed(sid)
    return ids


def test_searches_never_come_back_empty_during_a_reindex(app_stack: Stack) -> None:
    ids = _snippets(app_stack, 4, "during")
    settings = settings_from_env(app_stack.env)
    before = VectorStore(settings).target()
    searcher = Searcher(app_stack, ids)
    searcher.start()
    try:
        searcher.after(3)

        def interleave(_: ReindexProgress) -> None:
            searcher.after(1)  # at least one search lands between every two batches

        started = time.monotonic()
        result = reindex(settings, batch=4, on_batch=interleave)
        finished = time.monotonic()
        searcher.after(3)  # and some after the swap
    finally:
        searcher.halt.set()
        searcher.join(60)

    during = [s for s in searcher.results if started <= s.at <= finished]
    assert len(during) >= result.points // 4, "searches ran all through the rebuild"
    assert all(s.status == 200 for s in searcher.results), searcher.results
    assert all(s.citations > 0 for s in searcher.results), "no search may come back empty"
    vectors = VectorStore(settings)
    chunks = len(table_rows(app_stack)["chunks"])
    assert result.points == chunks and vectors.count() == chunks
    assert vectors.target() == result.collection and result.previous == before
    assert vectors.collections() == [result.collection], "the old collection is dropped"


class Crash(RuntimeError):
    pass


def test_an_interrupted_reindex_resumes_into_the_same_collection(app_stack: Stack) -> None:
    ids = _snippets(app_stack, 2, "resume")
    settings = settings_from_env(app_stack.env)
    vectors = VectorStore(settings)
    before = vectors.target()
    chunks = len(table_rows(app_stack)["chunks"])

    def crash(progress: ReindexProgress) -> None:
        raise Crash(f"killed after {progress.written} points")

    with pytest.raises(Crash):
        reindex(settings, batch=4, on_batch=crash)
    [interrupted] = [c for c in vectors.collections() if c != before]
    assert vectors.target() == before, "searches still go to the complete collection"
    assert vectors.point_payload(interrupted, MARKER_ID) is not None
    assert vectors.count(interrupted) == 4 + 1  # one batch and the progress marker

    result = reindex(settings, batch=4)
    assert result.collection == interrupted and result.resumed_from == 4
    assert result.points == chunks - 4, "the first batch is not written again"
    assert vectors.target() == interrupted and vectors.count() == chunks
    assert vectors.collections() == [interrupted]
    with app_stack.client() as http:
        answer = http.post(
            "/api/v1/coach/ask", json={"question": "what is step?", "snippet_id": ids[0]}
        ).json()
    assert answer["citations"]


def test_a_second_reindex_waits_its_turn(app_stack: Stack) -> None:
    settings = settings_from_env(app_stack.env)
    with psycopg.connect(dsn(app_stack), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (REINDEX_LOCK_KEY,))
        with pytest.raises(ReindexBusy, match="another reindex is running"):
            reindex(settings)
        # The operator's view of the same refusal: one error line, exit 1, no traceback.
        busy = subprocess.run(
            [str(INVOKE), "reindex", "--postgres-container", postgres_container_id(app_stack)],
            cwd=ROOT, env={**app_stack.env, "NO_COLOR": "1"}, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        said = busy.stdout + busy.stderr
        assert busy.returncode == 1, said
        assert "Traceback" not in said, said
        errors = [line for line in said.splitlines() if line.startswith("error: ")]
        assert errors == ["error: another reindex is running (advisory lock held)"], said
    # Once free, the command an operator runs goes through: JSON lines only, the result last.
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reindex.py"), "--json", "--batch", "8",
         "--postgres-container", postgres_container_id(app_stack)],
        env=app_stack.env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["event"] == "result"
    assert events[-1]["points"] == len(table_rows(app_stack)["chunks"])
    assert any(e["event"] == "progress" and e["step"] == "reindex" for e in events)
