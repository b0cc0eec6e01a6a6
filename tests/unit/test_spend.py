"""Spend bounds of the LLM: max_tokens on every call, prompts of bounded size, no work and no
paid attempt after the API stopped waiting (the deadline), at most a bounded number of asks
waited for per process, and each API key's daily token budget."""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from coach import apikeys
from coach.agent import build_prompt
from coach.db import make_engine, sessionmaker
from coach.llm import DEADLINE_EXCEEDED, LLMError, Message, OpenAIChat
from coach.migrate import migrate
from coach.settings import Settings, get_settings
from coach.vectors import Hit
from tests.support.fake_llm import API_KEY, FakeLLMServer
from tests.support.processes import free_port, wait_until
from tests.support.samples import FIB

QUESTION = [Message("user", "What does this loop do?")]
ASK = {"question": "How is fibonacci computed?", "top_k": 3}
AppClient = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer(free_port()).start()
    try:
        yield server
    finally:
        server.control.chat_open.set()  # nothing left waiting on it
        server.stop()


def llm_settings(fake: FakeLLMServer, **values: object) -> Settings:
    return Settings(
        llm_base_url=fake.base_url,
        llm_api_key=SecretStr(API_KEY),
        llm_model="fake-coach-1",
        **values,  # type: ignore[arg-type]
    )


# max_tokens


def test_every_chat_call_sends_max_tokens(fake_llm: FakeLLMServer) -> None:
    settings = llm_settings(fake_llm, llm_max_tokens=77)
    asyncio.run(OpenAIChat(settings).generate(QUESTION, context=[]))
    fake_llm.control.fail_next = 1  # a retried call sends it again
    asyncio.run(OpenAIChat(settings).generate(QUESTION, context=[]))
    assert [r["max_tokens"] for r in fake_llm.control.chat_requests] == [77, 77]
    assert fake_llm.control.calls["chat"] == 3


# The deadline


def test_no_llm_attempt_starts_after_the_deadline(fake_llm: FakeLLMServer) -> None:
    settings = llm_settings(fake_llm, llm_max_retries=10)
    with pytest.raises(LLMError) as passed:
        asyncio.run(OpenAIChat(settings).generate(QUESTION, context=[], deadline=time.time() - 1))
    assert passed.value.error_type == DEADLINE_EXCEEDED
    assert fake_llm.control.calls["chat"] == 0, "nobody waits for that answer: not paid for"

    # Failing calls, retried with backoff, until the deadline stops the retries: ten retries
    # would take several seconds, the deadline allows less than one.
    fake_llm.control.fail_next = 100
    deadline = time.time() + 0.8
    with pytest.raises(LLMError, match="503"):
        asyncio.run(OpenAIChat(settings).generate(QUESTION, context=[], deadline=deadline))
    assert 1 <= fake_llm.control.calls["chat"] < settings.llm_max_retries + 1
    assert max(fake_llm.control.chat_received_at) < deadline


def test_the_worker_does_not_work_on_an_ask_the_api_stopped_waiting_for(
    embedded_env: Path, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("LLM_API_KEY", API_KEY)
    get_settings.cache_clear()
    from worker.tasks import ask  # noqa: PLC0415

    asyncio.run(migrate(get_settings()))
    question = {"question": "How is fibonacci computed?", "snippet_id": None, "top_k": 3}
    answer = ask(**question, tenant="default", deadline=time.time() - 1)
    assert answer["error"] == "Unavailable" and "timed out" in answer["message"]
    assert fake_llm.control.calls["chat"] == 0
    fresh = ask(**question, tenant="default", deadline=time.time() + 30)
    assert "error" not in fresh, fresh
    assert fake_llm.control.calls["chat"] == 1


# The prompt's size


def hit(n: int, text: str) -> Hit:
    payload = {"title": f"s{n}", "start_line": 1, "end_line": 1, "text": text}
    return Hit(uuid.uuid4(), uuid.uuid4(), 1.0 - n / 100, payload)


def test_the_prompt_stops_before_the_excerpt_that_would_pass_its_cap() -> None:
    hits = [hit(1, "a" * 1500), hit(2, "b" * 1500), hit(3, "c" * 3000), hit(4, "d" * 10)]
    messages, kept = build_prompt("Why?", hits, max_bytes=4000)
    assert kept == hits[:2], "the best first; none after the first that does not fit"
    assert sum(len(m.content.encode()) for m in messages) <= 4000
    prompt = messages[-1].content
    assert "[2] s2" in prompt and "c" * 100 not in prompt and "[4]" not in prompt

    nothing, none_kept = build_prompt("Why?", [hit(1, "é" * 3000)], max_bytes=4000)
    assert none_kept == [] and "(none)" in nothing[-1].content


def test_the_prompt_cap_must_leave_room_for_a_chunk() -> None:
    with pytest.raises(ValidationError, match="PROMPT_MAX_BYTES"):
        Settings(chunk_max_bytes=4096, prompt_max_bytes=4096)


# Through the API (embedded mode, the fake as the LLM API)


@pytest.fixture
def app_client(
    embedded_env: Path, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> AppClient:
    """Starts the app with the settings given (NAME=value), on the same data each time."""
    monkeypatch.setenv("LLM_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("LLM_API_KEY", API_KEY)

    @contextmanager
    def start(**environment: str) -> Iterator[TestClient]:
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        from backend.app import create_app  # noqa: PLC0415

        with TestClient(create_app(get_settings()), raise_server_exceptions=False) as client:
            yield client

    return start


def make_key(tenant: str) -> str:
    """A write key of `tenant`, made in the database as `python -m coach keys create` does."""

    async def create() -> str:
        settings = get_settings()
        await migrate(settings)
        engine = make_engine(settings, pooled=False)
        try:
            _, key = await apikeys.create(sessionmaker(engine), tenant=tenant, scopes=["write"])
        finally:
            await engine.dispose()
        return key

    get_settings.cache_clear()
    return asyncio.run(create())


def ask(client: TestClient, key: str, **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    response: httpx.Response = client.post("/api/v1/coach/ask", json=ASK | body, headers=headers)
    return response


def counter(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


def seconds_to_midnight() -> float:
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return (midnight - now).total_seconds()


def test_the_app_sends_max_tokens_and_keeps_the_prompt_under_its_cap(
    app_client: AppClient, fake_llm: FakeLLMServer
) -> None:
    key = make_key("learners")
    code = "\n".join(
        f"def step_{i}(fibonacci_state): return fibonacci_state + {i}" for i in range(200)
    )
    limits = {"LLM_MAX_TOKENS": "64", "CHUNK_MAX_BYTES": "512", "PROMPT_MAX_BYTES": "2048"}
    with app_client(**limits) as client:
        uploaded = client.post(
            "/api/v1/snippets",
            json={"title": "steps", "language": "python", "content": code},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert uploaded.status_code == 202, uploaded.text
        answer = ask(client, key, top_k=20)
    assert answer.status_code == 200, answer.text
    [sent] = fake_llm.control.chat_requests
    assert sent["max_tokens"] == 64
    assert sum(len(m["content"].encode()) for m in sent["messages"]) <= 2048
    excerpts = [line for line in sent["messages"][-1]["content"].splitlines() if line[:1] == "["]
    assert 1 <= len(excerpts) < 20, "top_k 20 asked for more than the cap lets in"
    assert len(answer.json()["citations"]) == len(excerpts), "only what the LLM saw is cited"


def test_a_spent_budget_is_429_until_the_next_utc_day(
    app_client: AppClient, fake_llm: FakeLLMServer
) -> None:
    alice, other = make_key("school"), make_key("school")
    with app_client(DAILY_TOKEN_BUDGET="30") as client:
        first = ask(client, alice)
        assert first.status_code == 200, first.text
        usage = first.json()["usage"]
        assert usage["prompt_tokens"] + usage["completion_tokens"] >= 30, "spent by one ask"
        exhausted = counter(client, "coach_llm_budget_exhausted_total")

        latest = seconds_to_midnight()
        refused = ask(client, alice)
        earliest = seconds_to_midnight()
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "TooManyRequests"
        assert set(refused.json()) == {"error", "detail", "request_id", "trace_id"}
        retry_after = int(refused.headers["retry-after"])
        assert math.floor(earliest) <= retry_after <= math.ceil(latest), "until 00:00 UTC"
        assert fake_llm.control.calls["chat"] == 1, "a refused ask calls no LLM"
        assert counter(client, "coach_llm_budget_exhausted_total") == exhausted + 1

        assert ask(client, other).status_code == 200, "each key has a budget of its own"

    # The next day, by the clock setting: a new budget.
    with app_client(DAILY_TOKEN_BUDGET="30", CLOCK_OFFSET_SECONDS="86400") as client:
        assert ask(client, alice).status_code == 200
    with app_client(DAILY_TOKEN_BUDGET="0", CLOCK_OFFSET_SECONDS="0") as client:
        assert ask(client, alice).status_code == 200, "0: no limit"


def test_asks_past_ask_max_waiting_get_503_while_uploads_go_through(
    app_client: AppClient, fake_llm: FakeLLMServer
) -> None:
    """More asks held than the default thread pool has threads (which uploads use): were each
    waiting ask to hold one of them, the upload could not be served."""
    key = make_key("busy")
    limit = min(32, (os.cpu_count() or 1) + 4) + 2  # asyncio's default pool, and then some
    with app_client(ASK_MAX_WAITING=str(limit)) as client, ThreadPoolExecutor(limit) as pool:
        fake_llm.control.chat_open.clear()  # the LLM answers nobody until the end
        pending = [pool.submit(ask, client, key) for _ in range(limit)]
        wait_until(
            lambda: fake_llm.control.chat_held == limit,
            seconds=30,
            what=f"{limit} asks waiting on the LLM",
        )
        shed_before = counter(client, "coach_asks_shed_total")

        shed = ask(client, key)
        assert shed.status_code == 503 and shed.json()["error"] == "Unavailable", shed.text
        assert shed.headers["retry-after"] == "5"
        uploaded = client.post(
            "/api/v1/snippets",
            json={"title": "fib", "language": "python", "content": FIB},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert uploaded.status_code == 202, uploaded.text
        assert fake_llm.control.chat_held == limit and not any(f.done() for f in pending)
        assert counter(client, "coach_asks_shed_total") == shed_before + 1

        fake_llm.control.chat_open.set()
        assert [f.result().status_code for f in pending] == [200] * limit
        assert ask(client, key).status_code == 200, "the slots are free again"
