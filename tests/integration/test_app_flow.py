"""The coach's flows against real PostgreSQL and Redis, a real Celery worker process and the
backend served by uvicorn — and what happens when each of them fails."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from tests.support.processes import wait_until
from tests.support.samples import FIB
from tests.support.stack import Stack, wait_ready


def long_source(tag: str, lines: int = 200) -> str:
    return "\n".join(f"def {tag}_step_{i}(state):\n    return state + {i}" for i in range(lines))


def test_upload_is_indexed_by_the_worker_and_the_coach_cites_it(app_stack: Stack) -> None:
    accepted = app_stack.upload("fib.py", FIB)
    snippet = app_stack.wait_indexed(accepted["id"])
    assert snippet["chunk_count"] == 1 and snippet["task_id"] == accepted["task_id"]
    with app_stack.client() as http:
        task = http.get(f"/api/v1/tasks/{accepted['task_id']}").json()
        assert task["state"] == "SUCCESS" and task["result"]["chunks"] == 1
        content = http.get(f"/api/v1/snippets/{accepted['id']}/content")
        assert content.text == FIB
        answer = http.post(
            "/api/v1/coach/ask",
            json={"question": "how is fibonacci computed?", "snippet_id": accepted["id"]},
        ).json()
        health = http.get("/health").json()
    assert answer["model"] == "fake-coach-1"
    assert answer["citations"][0]["snippet_id"] == accepted["id"]
    assert answer["answer"] == "Fake coach answer citing [1]."
    assert answer["usage"]["prompt_tokens"] > 0
    assert health["status"] == "healthy", health
    assert {name for name, c in health["checks"].items() if c["status"] == "ok"} == {
        "database",
        "redis",
        "qdrant",
        "object_store",
        "llm",
    }


def test_worker_killed_mid_indexing_loses_nothing(app_stack: Stack) -> None:
    control = app_stack.llm.control
    source = long_source("killed")
    control.embed_delay_s = 30.0  # the embedding call hangs: indexing is mid-flight
    seen_before = len(control.embedded_texts)
    accepted = app_stack.upload("killed.py", source)
    wait_until(
        lambda: len(control.embedded_texts) > seen_before,
        seconds=60,
        what="the worker calling the embeddings API",
    )
    assert app_stack.snippet(accepted["id"])["status"] == "indexing"
    children = app_stack.procs["worker"].children()
    assert len(children) == 1, children
    os.kill(children[0], signal.SIGKILL)  # the pool process running the task, like an OOM kill
    control.embed_delay_s = 0.0
    snippet = app_stack.wait_indexed(accepted["id"])
    first_chunk = source.splitlines()[0]
    attempts = sum(text.startswith(first_chunk) for text in control.embedded_texts)
    assert attempts >= 2, "the task must have run again after the kill"
    assert snippet["chunk_count"] == 13  # 400 lines in windows of 40 advancing by 32
    assert app_stack.procs["worker"].alive(), "the worker replaces its killed pool process"


def test_worker_killed_mid_ask_never_pays_for_the_llm_call_twice(app_stack: Stack) -> None:
    """An ask is acked on receipt: the message is not redelivered to the replacement pool
    process (which would call the LLM again for a request that is giving up); the API answers
    503 at its deadline instead, and the next ask is served."""
    control = app_stack.llm.control
    control.chat_open.clear()  # the LLM call hangs: the ask is mid-flight
    calls = control.calls["chat"]
    with app_stack.client(timeout=60) as http, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(http.post, "/api/v1/coach/ask", json={"question": "what is fib?"})
        wait_until(lambda: control.chat_held == 1, seconds=60, what="the worker calling the LLM")
        [child] = app_stack.procs["worker"].children()
        os.kill(child, signal.SIGKILL)
        wait_until(
            lambda: app_stack.procs["worker"].children() not in ([], [child]),
            seconds=60,
            what="the worker replacing its killed pool process",
        )
        control.chat_open.set()  # a redelivered ask would now be answered at once
        given_up = pending.result()
        assert given_up.status_code == 503, given_up.text
        assert control.calls["chat"] == calls + 1, "the killed ask's call was made again"
        again = http.post("/api/v1/coach/ask", json={"question": "what is fib?"})
    assert again.status_code == 200, again.text
    assert control.calls["chat"] == calls + 2


def test_postgres_outage_gives_fast_503_and_recovers(app_stack: Stack) -> None:
    pg = app_stack.containers["postgres"].get_wrapped_container()
    pg.stop(timeout=20)
    try:
        with app_stack.client(timeout=15) as http:
            outage = [http.get("/api/v1/snippets") for _ in range(3)]
            outage.append(
                http.post(
                    "/api/v1/snippets",
                    json={"title": "during", "language": "python", "content": "x = 1\n"},
                )
            )
            ready = http.get("/health/ready")
    finally:
        pg.start()
    for response in outage:
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "Unavailable"
        assert "database" in response.json()["detail"]
    assert ready.status_code == 503 and ready.json()["checks"]["database"]["status"] == "error"
    print(f"recovered {wait_ready(app_stack):.1f}s after PostgreSQL came back")
    titles = {s["title"] for s in _all_snippets(app_stack)}
    assert "during" not in titles, "a request refused with 503 must change nothing"
    accepted = app_stack.upload("after-pg.py", FIB)
    app_stack.wait_indexed(accepted["id"])


def test_redis_outage_loses_no_enqueued_task(app_stack: Stack) -> None:
    app_stack.procs["worker"].stop()  # tasks now wait in Redis
    queued = [app_stack.upload(f"queued-{i}.py", FIB + f"\n# {i}\n")["id"] for i in range(3)]
    assert {app_stack.snippet(s)["status"] for s in queued} == {"pending"}
    before = len(_all_snippets(app_stack))
    rd = app_stack.containers["redis"].get_wrapped_container()
    rd.stop(timeout=20)
    try:
        with app_stack.client(timeout=15) as http:
            started = time.monotonic()
            refused = http.post(
                "/api/v1/snippets",
                json={"title": "during", "language": "python", "content": "x = 1\n"},
            )
            print(f"upload refused after {time.monotonic() - started:.2f}s")
            ready = http.get("/health/ready")
    finally:
        rd.start()
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "Unavailable"
    assert ready.status_code == 503 and ready.json()["checks"]["redis"]["status"] == "error"
    wait_ready(app_stack)
    assert len(_all_snippets(app_stack)) == before, "the refused upload changed nothing"
    app_stack.restart_worker()
    for sid in queued:
        assert app_stack.wait_indexed(sid)["chunk_count"] == 1


def _all_snippets(app_stack: Stack) -> list[dict[str, object]]:
    with app_stack.client() as http:
        return list(http.get("/api/v1/snippets", params={"limit": 100}).json()["items"])
