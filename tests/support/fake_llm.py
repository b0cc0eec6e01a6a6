"""TEST DOUBLE: a local OpenAI-compatible API (chat completions, embeddings, models).

No real LLM can be reached from these machines; this fake speaks the same protocol so the
application's OpenAI client, retries, health probe and metrics run for real. It answers
deterministically, embeds with the application's own hashing embedder, and can be told to be
slow, to hold its answers or to fail, to provoke the faults the tests need; it keeps the chat
requests it received, so tests can see what the application sent (max_tokens, the prompt).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from coach.embeddings import HashingEmbedder

API_KEY = "sk-test-fake-llm"


@dataclass
class Control:
    embed_delay_s: float = 0.0
    fail_next: int = 0  # answer 503 to this many chat calls
    down: bool = False  # every call 503 (and /models too)
    calls: dict[str, int] = field(default_factory=lambda: {"chat": 0, "embeddings": 0, "models": 0})
    embedded_texts: list[str] = field(default_factory=list)
    chat_requests: list[dict[str, Any]] = field(default_factory=list)  # the JSON bodies
    chat_received_at: list[float] = field(default_factory=list)  # Unix time of every chat call
    # Cleared: chat calls wait (counted in chat_held) until it is set again.
    chat_open: threading.Event = field(default_factory=lambda: _set(threading.Event()))
    chat_held: int = 0


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


def make_app(control: Control) -> FastAPI:
    app = FastAPI()

    def unauthorised(authorization: str | None) -> JSONResponse | None:
        if authorization != f"Bearer {API_KEY}":
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        if control.down:
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        return None

    @app.get("/v1/models")
    async def models(authorization: str | None = Header(default=None)) -> Any:
        control.calls["models"] += 1
        return unauthorised(authorization) or {"object": "list", "data": [{"id": "fake-coach-1"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request, authorization: str | None = Header(default=None)) -> Any:
        control.calls["chat"] += 1
        control.chat_received_at.append(time.time())
        if (denied := unauthorised(authorization)) is not None:
            return denied
        if control.fail_next > 0:
            control.fail_next -= 1
            return JSONResponse({"error": {"message": "try again"}}, status_code=503)
        body = await request.json()
        control.chat_requests.append(body)
        if not control.chat_open.is_set():
            control.chat_held += 1
            try:
                while not control.chat_open.is_set():
                    await asyncio.sleep(0.01)
            finally:
                control.chat_held -= 1
        prompt = body["messages"][-1]["content"]
        cited = sorted(
            {line.split("]")[0] + "]" for line in prompt.splitlines() if line.startswith("[")}
        )
        text = f"Fake coach answer citing {' '.join(cited) or 'nothing'}."
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_tokens + len(text.split()),
            },
        }

    @app.post("/v1/embeddings")
    async def embeddings(request: Request, authorization: str | None = Header(default=None)) -> Any:
        control.calls["embeddings"] += 1
        if (denied := unauthorised(authorization)) is not None:
            return denied
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        control.embedded_texts.extend(texts)
        if control.embed_delay_s:
            await asyncio.sleep(control.embed_delay_s)
        vectors = HashingEmbedder(int(body.get("dimensions") or 256)).embed(texts)
        return {
            "object": "list",
            "model": body["model"],
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }

    return app


class FakeLLMServer:
    """Runs the fake on 127.0.0.1 in a background thread of the test process."""

    def __init__(self, port: int) -> None:
        self.control = Control()
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v1"
        config = uvicorn.Config(
            make_app(self.control), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> FakeLLMServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake LLM server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
