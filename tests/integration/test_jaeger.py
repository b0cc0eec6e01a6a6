"""Where the Jaeger image exists, one ask's trace is read back from Jaeger's own query API:
the HTTP server span, the Celery publish and run spans, the three agent steps and the LLM
call's `chat {model}` span."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.support.containers import container, running
from tests.support.otlp import ASK_SPANS, chat_span
from tests.support.processes import free_port, wait_until
from tests.support.samples import FIB
from tests.support.stack import stack


def test_ask_trace_is_read_back_from_jaeger(tmp_path: Path) -> None:
    otlp_port, query_port, health_port = free_port(), free_port(), free_port()
    jaeger = (
        container("JAEGER_IMAGE")
        .with_bind_ports(4318, otlp_port)
        .with_bind_ports(16686, query_port)
        .with_bind_ports(13133, health_port)
    )
    with running(jaeger):
        wait_until(
            lambda: _answers(f"http://127.0.0.1:{health_port}/status"),
            seconds=60,
            what="jaeger healthy",
        )
        with (
            stack("local-doubles", tmp_path, otlp_endpoint=f"http://127.0.0.1:{otlp_port}") as app,
            app.client() as http,
        ):
            sid = app.upload("fib.py", FIB)["id"]
            app.wait_indexed(sid)
            ask = http.post("/api/v1/coach/ask", json={"question": "fibonacci?", "snippet_id": sid})
            assert ask.status_code == 200, ask.text
            trace_id = ask.headers["x-trace-id"]
            found: dict[str, Any] = {}

            def complete() -> bool:
                response = httpx.get(
                    f"http://127.0.0.1:{query_port}/api/traces/{trace_id}", timeout=5
                )
                if response.status_code != 200 or not response.json().get("data"):
                    return False
                found.update(response.json()["data"][0])
                names = {s["operationName"] for s in found["spans"]}
                return names >= ASK_SPANS | {chat_span("fake-coach-1")}

            wait_until(complete, seconds=60, what="the ask's trace in Jaeger", interval=1)
    services = {p["serviceName"] for p in found["processes"].values()}
    assert {"coach-backend", "coach-worker"} <= services
    chat = next(s for s in found["spans"] if s["operationName"] == chat_span("fake-coach-1"))
    tags = {t["key"]: t["value"] for t in chat["tags"]}
    assert tags["span.kind"] == "client"
    assert tags["gen_ai.provider.name"] == "openai"
    assert tags["gen_ai.request.model"] == "fake-coach-1"
    assert int(tags["gen_ai.usage.output_tokens"]) == ask.json()["usage"]["completion_tokens"]
    assert not [
        s["operationName"]
        for s in found["spans"]
        if any(t["key"] == "gen_ai.system" for t in s["tags"])
    ]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
