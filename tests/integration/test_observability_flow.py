"""Observability across real processes: the backend served by uvicorn and a Celery worker with
a prefork pool, exporting spans to an OTLP receiver in this test, logging to files.

One upload and one ask must give: JSON log lines only, from both processes, with the upload's
trace id in the backend's lines and in the worker's lines of the task it enqueued; one trace
from the HTTP request through the Celery publish to the task run in the worker; the agent's
spans and the LLM call's CLIENT span after the OpenTelemetry GenAI conventions, with its
gen_ai.client.* histograms at the same receiver; task and queue metrics on the worker's own
endpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from coach.tracing import DURATION_BUCKETS, TOKEN_BUCKETS
from tests.support.otlp import OtlpReceiver, ReceivedPoint, ReceivedSpan, chat_span
from tests.support.samples import FIB
from tests.support.stack import Stack

REQUIRED_KEYS = {"timestamp", "level", "logger", "event", "service", "version", "environment"}
MODEL = "fake-coach-1"  # LLM_MODEL of the stack, which the fake answers as
QUESTION = "how is fibonacci computed?"
GENAI_METRICS = {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"}


def json_log(path: Path) -> list[dict[str, Any]]:
    """Every line of a process's output; a line that is not a JSON object fails the test."""
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines.pop()  # being written right now
    parsed, bad = [], []
    for line in filter(None, lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad.append(line)
            continue
        if not isinstance(record, dict) or not set(record) >= REQUIRED_KEYS:
            bad.append(line)
        else:
            parsed.append(record)
    assert not bad, f"{path.name}: lines that are not JSON log records:\n" + "\n".join(bad[:20])
    return parsed


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans}


def latest(points: list[ReceivedPoint], *keys: str) -> dict[tuple[Any, ...], ReceivedPoint]:
    """The last point of each series (cumulative exports repeat them), keyed by `keys`."""
    return {tuple(p.attributes.get(k) for k in keys): p for p in points}


def test_one_request_is_traced_logged_and_counted_across_processes(app_stack: Stack) -> None:
    otlp = app_stack.otlp
    assert isinstance(otlp, OtlpReceiver)
    with app_stack.client() as http:
        upload = http.post(
            "/api/v1/snippets", json={"title": "fib.py", "language": "python", "content": FIB}
        )
        assert upload.status_code == 202, upload.text
        accepted = upload.json()
        app_stack.wait_indexed(accepted["id"])
        ask = http.post(
            "/api/v1/coach/ask", json={"question": QUESTION, "snippet_id": accepted["id"]}
        )
        assert ask.status_code == 200, ask.text
    upload_trace, ask_trace = upload.headers["x-trace-id"], ask.headers["x-trace-id"]
    assert ask.json()["trace_id"] == ask_trace

    # One trace from the HTTP request through the Celery message to the worker's run.
    otlp.wait_for(
        lambda _: (
            {"run/coach.index_snippet", "apply_async/coach.index_snippet"}
            <= set(by_name(otlp.trace(upload_trace)))
            and {
                "POST /api/v1/coach/ask",
                "apply_async/coach.ask",
                "run/coach.ask",
                "coach.generate",
                chat_span(MODEL),
            }
            <= set(by_name(otlp.trace(ask_trace)))
        ),
        seconds=60,
        what="the upload's and the ask's spans at the OTLP receiver",
    )
    uploaded = by_name(otlp.trace(upload_trace))
    server = uploaded["POST /api/v1/snippets"]
    publish = uploaded["apply_async/coach.index_snippet"]
    run = uploaded["run/coach.index_snippet"]
    assert (server.kind, server.service) == ("server", "coach-backend")
    assert (publish.kind, publish.service) == ("producer", "coach-backend")
    assert (run.kind, run.service) == ("consumer", "coach-worker")
    assert run.parent_id == publish.span_id, "the worker continues the backend's trace"
    assert "s3 PutObject" in uploaded, "the backend's object store call"
    in_worker = {s.name for s in uploaded.values() if s.service == "coach-worker"}
    assert "s3 GetObject" in in_worker, in_worker
    assert any(
        "db.system" in s.attributes or "db.system.name" in s.attributes
        for s in uploaded.values()
        if s.service == "coach-worker"
    ), "the worker's database calls are traced"

    # The ask: one trace from the HTTP server span through the Celery publish (backend) and
    # run (worker) spans into the three agent steps.
    asked = by_name(otlp.trace(ask_trace))
    ask_server = asked["POST /api/v1/coach/ask"]
    ask_publish, ask_run = asked["apply_async/coach.ask"], asked["run/coach.ask"]
    assert (ask_publish.kind, ask_publish.service) == ("producer", "coach-backend")
    assert (ask_run.kind, ask_run.service) == ("consumer", "coach-worker")
    assert ask_run.parent_id == ask_publish.span_id
    assert ask_publish.parent_id in {
        s.span_id for s in asked.values() if s.service == "coach-backend"
    }
    assert ask_server.kind == "server"
    # OTEL_SEMCONV_STABILITY_OPT_IN=http: the stable HTTP attribute names, whatever the
    # instrumentations' default.
    assert ask_server.attributes["http.request.method"] == "POST"
    assert ask_server.attributes["http.route"] == "/api/v1/coach/ask"
    assert "http.method" not in ask_server.attributes
    for step in ("coach.retrieve", "coach.prompt", "coach.generate"):
        assert asked[step].parent_id == ask_run.span_id, step
        assert asked[step].service == "coach-worker", step
    generate = asked["coach.generate"]
    assert (generate.kind, generate.attributes["coach.llm.provider"]) == ("internal", "openai")
    assert asked["coach.retrieve"].attributes["coach.retrieve.hits"] == 1

    # The LLM API call: the GenAI conventions' CLIENT span `chat {model}` under coach.generate,
    # in the same trace as the HTTP request, with the HTTP call to the API under it.
    usage = ask.json()["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    chat = asked[chat_span(MODEL)]
    assert (chat.kind, chat.service, chat.parent_id) == ("client", "coach-worker", generate.span_id)
    assert chat.trace_id == ask_server.trace_id == ask_trace
    call: dict[str, Any] = {  # on the span and on every metric point
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
        "server.address": "127.0.0.1",
        "server.port": app_stack.llm.port,
    }
    expected = call | {
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
    }
    assert {k: chat.attributes.get(k) for k in expected} == expected
    assert "error.type" not in chat.attributes
    api_calls = [s for s in asked.values() if s.parent_id == chat.span_id]
    assert [(s.kind, s.attributes.get("http.request.method")) for s in api_calls] == [
        ("client", "POST")
    ], "the chat completion request over httpx"
    everywhere = otlp.spans()
    assert not [s.name for s in everywhere if "gen_ai.system" in s.attributes], "deprecated"
    # No learner content in any attribute: neither the question nor the answer.
    answer = ask.json()["answer"]
    leaked = [
        (s.name, key)
        for s in otlp.trace(ask_trace)
        for key, value in s.attributes.items()
        if isinstance(value, str) and (QUESTION in value or answer in value)
    ]
    assert not leaked, leaked

    # The GenAI client histograms, from the worker's pool process that made the call.
    otlp.wait_for_points(
        lambda points: {p.metric for p in points} >= GENAI_METRICS,
        seconds=30,
        what="the gen_ai.client.* histograms at the OTLP receiver",
    )
    received = [p for p in otlp.points() if p.metric in GENAI_METRICS]
    assert {p.service for p in received} == {"coach-worker"}
    tokens = latest(otlp.points("gen_ai.client.token.usage"), "gen_ai.token.type")
    assert set(tokens) == {("input",), ("output",)}
    for kind, count in (("input", usage["prompt_tokens"]), ("output", usage["completion_tokens"])):
        point = tokens[(kind,)]
        assert point.attributes == call | {"gen_ai.token.type": kind}, kind
        assert (point.unit, point.count, point.sum) == ("{token}", 1, count), kind
        assert point.bounds == TOKEN_BUCKETS, "the conventions' recommended buckets"
    [duration] = latest(otlp.points("gen_ai.client.operation.duration"), "error.type").values()
    assert duration.attributes == call, "no error.type: the call succeeded"
    assert (duration.unit, duration.count) == ("s", 1) and 0 < duration.sum < 30
    assert duration.bounds == DURATION_BUCKETS

    # Logs: JSON only, from both processes, the trace id in both.
    backend, worker = (json_log(app_stack.procs[name].log) for name in ("backend", "worker"))
    assert {line["service"] for line in backend} == {"coach-backend"}
    assert {line["service"] for line in worker} == {"coach-worker"}
    access = [
        line
        for line in backend
        if line["logger"] == "uvicorn.access" and line.get("trace_id") == upload_trace
    ]
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("POST", "/api/v1/snippets", 202)
    ]
    assert access[0]["request_id"] == upload.headers["x-request-id"]
    task_lines = [line for line in worker if line.get("trace_id") == upload_trace]
    assert {line.get("task_id") for line in task_lines} == {accepted["task_id"]}
    assert {"snippet indexed"} <= {line["event"] for line in task_lines}
    assert any(line["event"].endswith("ready.") for line in worker)
    assert any(line["event"] == "worker starting" for line in worker), "the banner, as a line"

    # Metrics: the worker's own endpoint sums its pool processes; the backend's has the HTTP.
    on_worker = samples(app_stack.worker_metrics_url)
    succeeded = {"task": "coach.index_snippet", "state": "succeeded"}
    assert on_worker[("coach_celery_tasks_total", frozenset(succeeded.items()))] >= 1
    assert on_worker[("coach_celery_queue_messages", frozenset({("queue", "coach")}))] >= 0
    assert on_worker[("coach_snippets_indexed_total", frozenset())] >= 1
    heartbeat = on_worker[("coach_worker_heartbeat_timestamp_seconds", frozenset())]
    assert time.time() - heartbeat < 60
    built = [k for k in on_worker if k[0] == "coach_build_info"]
    assert [dict(labels)["service"] for _, labels in built] == ["coach-worker"]
    ok = {"model": MODEL, "status": "ok"}  # the agent, so its LLM calls, runs here
    assert on_worker[("coach_llm_requests_total", frozenset(ok.items()))] >= 1
    on_backend = samples(f"{app_stack.base_url}/metrics")
    created = {"method": "POST", "route": "/api/v1/snippets", "status": "202"}
    assert on_backend[("coach_http_requests_total", frozenset(created.items()))] >= 1
