"""Observability in embedded mode: trace ids on responses, logs as JSON lines, Prometheus
metrics by route template, spans exported over OTLP to a receiver in this process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError

from coach import log, metrics, multiprocess, tracing
from coach.llm import LLMError, Message, OpenAIChat
from coach.settings import Settings, get_settings
from tests.support.embedded import bearer, dev_key, keyed_client
from tests.support.fake_llm import API_KEY, FakeLLMServer
from tests.support.otlp import OtlpReceiver, chat_span, otlp_receiver
from tests.support.processes import (
    ROOT,
    Proc,
    free_port,
    python,
    run_migrate,
    wait_answering,
)
from tests.support.samples import FIB
from tests.unit.test_api_embedded import upload

HEX32 = re.compile(r"^[0-9a-f]{32}$")
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
REQUIRED_KEYS = {"timestamp", "level", "logger", "event", "service", "version", "environment"}
ASK = {"question": "How is fibonacci computed?", "top_k": 3}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    text = client.get("/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def json_lines(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    for line in lines:
        assert set(line) >= REQUIRED_KEYS, line
    return lines


# Trace ids on every response


def test_every_response_carries_a_trace_id_that_error_bodies_repeat(client: TestClient) -> None:
    listing = client.get("/api/v1/snippets")
    assert HEX32.match(listing.headers["x-trace-id"])
    missing = client.get(f"/api/v1/snippets/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert HEX32.match(missing.headers["x-trace-id"])
    assert missing.json()["trace_id"] == missing.headers["x-trace-id"]
    assert missing.headers["x-trace-id"] != listing.headers["x-trace-id"], "one trace a request"
    invalid = client.post("/api/v1/coach/ask", json={"question": ""})
    assert invalid.status_code == 422
    assert invalid.json()["trace_id"] == invalid.headers["x-trace-id"]


def test_a_callers_traceparent_is_continued(client: TestClient) -> None:
    response = client.get(f"/api/v1/snippets/{uuid.uuid4()}", headers={"traceparent": TRACEPARENT})
    assert response.headers["x-trace-id"] == CALLER_TRACE
    assert response.json()["trace_id"] == CALLER_TRACE
    invalid = f"00-{'0' * 32}-{CALLER_SPAN}-01"  # an all-zero trace id is no trace id
    fresh = client.get("/api/v1/snippets", headers={"traceparent": invalid})
    assert HEX32.match(fresh.headers["x-trace-id"]) and fresh.headers["x-trace-id"] != "0" * 32


def test_an_unhandled_error_answers_with_both_ids_and_is_counted(embedded_env: Path) -> None:
    from backend.app import create_app  # noqa: PLC0415

    app = create_app(get_settings())

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        before = scrape(client)
        response = client.get("/boom", headers={"traceparent": TRACEPARENT})
        after = scrape(client)
    assert response.status_code == 500
    assert response.headers["x-trace-id"] == CALLER_TRACE == response.json()["trace_id"]
    assert response.headers["x-request-id"] == response.json()["request_id"]
    counted = {"method": "GET", "route": "/boom", "status": "500"}
    assert value(after, "coach_http_requests_total", **counted) == (
        value(before, "coach_http_requests_total", **counted) + 1
    )


# Metrics


def test_metrics_after_an_upload_and_an_ask(client: TestClient) -> None:
    before = scrape(client)
    upload(client)
    assert client.post("/api/v1/coach/ask", json=ASK).status_code == 200
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    post = {"method": "POST"}
    assert grew("coach_http_requests_total", **post, route="/api/v1/snippets", status="202") == 1
    assert grew("coach_http_requests_total", **post, route="/api/v1/coach/ask", status="200") == 1
    assert grew("coach_http_request_duration_seconds_count", **post, route="/api/v1/snippets") == 1
    assert grew("coach_llm_requests_total", model="extractive-v1", status="ok") == 1
    assert grew("coach_llm_request_duration_seconds_count", model="extractive-v1") == 1
    assert grew("coach_llm_tokens_total", model="extractive-v1", kind="prompt") > 0
    assert grew("coach_llm_tokens_total", model="extractive-v1", kind="completion") > 0
    for step in ("retrieve", "prompt", "generate"):
        assert grew("coach_agent_step_duration_seconds_count", step=step) == 1, step
    assert grew("coach_snippets_ingested_total") == 1
    # Embedded mode runs the indexing task eagerly, in this process: its metrics are here too.
    assert grew("coach_snippets_indexed_total") == 1
    assert grew("coach_celery_tasks_total", task="coach.index_snippet", state="started") == 1
    assert grew("coach_celery_tasks_total", task="coach.index_snippet", state="succeeded") == 1
    assert grew("coach_celery_task_duration_seconds_count", task="coach.index_snippet") == 1
    settings = get_settings()
    build = {"version": settings.version, "revision": "unknown", "service": "coach-backend"}
    assert value(after, "coach_build_info", **build) == 1


def test_routes_are_labelled_by_template_and_unmatched_paths_share_one_label(
    client: TestClient,
) -> None:
    before = scrape(client)
    paths = [f"/no/such/{uuid.uuid4()}" for _ in range(3)]
    for path in paths:
        assert client.get(path).status_code == 404
    client.get(f"/api/v1/snippets/{uuid.uuid4()}")
    assert client.delete("/api/v1/snippets").status_code == 405
    after = scrape(client)

    def grew(**labels: str) -> float:
        return value(after, "coach_http_requests_total", **labels) - value(
            before, "coach_http_requests_total", **labels
        )

    assert grew(method="GET", route="<unmatched>", status="404") == 3
    assert grew(method="GET", route="/api/v1/snippets/{snippet_id}", status="404") == 1
    assert grew(method="DELETE", route="/api/v1/snippets", status="405") == 1
    routes = {dict(labels).get("route", "") for _, labels in after}
    assert not [r for r in routes if "/no/such" in r or re.search(r"[0-9a-f]{8}-", r)]


def test_llm_failures_are_counted_and_health_sets_llm_up(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(client)
    assert client.get("/health").json()["checks"]["llm"]["status"] == "ok"
    assert value(scrape(client), "coach_llm_up") == 1

    async def failing(*_: Any, **__: Any) -> Any:
        raise LLMError("provider down")

    # The agent runs in the (here eager) Celery task, with a runtime of its own.
    monkeypatch.setattr("coach.llm.ExtractiveLLM.generate", failing)
    before = scrape(client)
    refused = client.post("/api/v1/coach/ask", json=ASK)
    assert refused.status_code == 503, "a provider outage is a dependency down, not a bug"
    # The dependency's name, never the exception's text.
    assert refused.json()["detail"] == "the LLM API is unavailable; retry shortly"
    assert refused.headers["retry-after"] == "5"
    after = scrape(client)
    labels = {"model": "extractive-v1", "status": "error"}
    assert value(after, "coach_llm_requests_total", **labels) == (
        value(before, "coach_llm_requests_total", **labels) + 1
    )


def test_observability_off_keeps_trace_ids_and_records_no_http_metrics(
    embedded_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.app import create_app  # noqa: PLC0415

    monkeypatch.setenv("OBSERVABILITY_ENABLED", "false")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as client:
        before = scrape(client)
        live = [client.get("/health/live", headers={"traceparent": TRACEPARENT}) for _ in range(3)]
        after = scrape(client)
    assert {r.headers["x-trace-id"] for r in live} == {CALLER_TRACE}
    assert [k for k in after if k[0] == "coach_http_requests_total"] == [
        k for k in before if k[0] == "coach_http_requests_total"
    ]
    labels = {"method": "GET", "route": "/health/live", "status": "200"}
    assert value(after, "coach_http_requests_total", **labels) == value(
        before, "coach_http_requests_total", **labels
    )


def test_multiprocess_mode_sums_the_processes(tmp_path: Path) -> None:
    """What gunicorn's workers and Celery's pool processes rely on, in real processes."""
    directory = tmp_path / "prometheus"

    def python(code: str, **env: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    record = (
        "from coach import metrics; metrics.SNIPPETS_INDEXED.inc({n}); metrics.LLM_UP.set({up})"
    )
    start = "from coach import multiprocess; multiprocess.prepare()\n"  # the parent, at start
    scrape_ = "from coach import metrics; print(metrics.render()[0].decode())"
    python(start + record.format(n=2, up=0), **env)
    python(record.format(n=3, up=1), **env)  # another process of the group
    text = python(scrape_, **env)
    assert "coach_snippets_indexed_total 5.0" in text
    assert "coach_llm_up 1.0" in text  # the most recent value, not a sum
    python(start + record.format(n=1, up=1), **env)  # a restart: the earlier run's files go
    assert "coach_snippets_indexed_total 1.0" in python(scrape_, **env)


def test_gunicorn_workers_share_one_metrics_endpoint_and_log_json(
    embedded_env: Path, tmp_path: Path
) -> None:
    """The image's server: gunicorn's config, two uvicorn workers, multiprocess metrics, and
    gunicorn's own lines through the JSON logger class too."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR",)},
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "WEB_CONCURRENCY": "2",
    }
    (tmp_path / "prometheus").mkdir()
    run_migrate(env)  # embedded SQLite: one migrator, not one per worker
    server = Proc(
        "gunicorn",
        python(
            "-m",
            "gunicorn",
            "--config",
            "backend/gunicorn.conf.py",
            "--logger-class",
            "backend.gunicorn_logger.JsonLogger",
            "--bind",
            f"127.0.0.1:{port}",
            "backend.app:app",
        ),
        env,
        tmp_path,
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_answering(server, f"{base}/health/live")
        with httpx.Client(base_url=base, timeout=10) as http:
            key = bearer(dev_key(embedded_env))  # made by the migrate step
            for _ in range(20):  # new connections: both workers take some
                listed = httpx.get(f"{base}/api/v1/snippets", headers=key, timeout=10)
                assert listed.status_code == 200
            scrapes = [http.get("/metrics").text for _ in range(4)]
    finally:
        server.stop()
    series = 'coach_http_requests_total{method="GET",route="/api/v1/snippets",status="200"} 20.0'
    assert all(series in text for text in scrapes), "every scrape sums both workers"
    assert len(list((tmp_path / "prometheus").glob("counter_*.db"))) >= 2
    lines = json_lines(server.log.read_text())
    gunicorn_events = [line["event"] for line in lines if line["logger"] == "gunicorn.error"]
    assert gunicorn_events[0].startswith("Starting gunicorn"), gunicorn_events
    assert sum(event.startswith("Booting worker") for event in gunicorn_events) == 2
    assert any(line["logger"] == "uvicorn.access" and line.get("trace_id") for line in lines)


def test_the_default_multiprocess_dir_is_exported_and_emptied(tmp_path: Path) -> None:
    stale = tmp_path / "prom" / "counter_1.db"
    stale.parent.mkdir()
    stale.write_bytes(b"old run")
    keep = stale.parent / "notes.txt"
    keep.write_text("not ours")
    code = (
        "import os; from pathlib import Path; from coach import multiprocess;"
        f"print(multiprocess.prepare(default=Path({str(stale.parent)!r})));"
        "print(os.environ['PROMETHEUS_MULTIPROC_DIR'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == [str(stale.parent)] * 2
    assert not stale.exists() and keep.exists()


def test_preparing_after_prometheus_client_was_imported_fails_loudly() -> None:
    import prometheus_client  # noqa: F401, PLC0415 - as any earlier import would have

    with pytest.raises(RuntimeError, match="imported before"):
        multiprocess.prepare()


def test_queue_length_is_read_from_redis_at_scrape_time() -> None:
    from worker.observability import QueueLengthCollector  # noqa: PLC0415

    class FakeRedis:
        def __init__(self) -> None:
            self.length: int | Exception = 7

        def llen(self, name: str) -> int:
            if isinstance(self.length, Exception):
                raise self.length
            return self.length

    client = FakeRedis()
    collector = QueueLengthCollector(client, ["coach"])  # type: ignore[arg-type]
    [family] = list(collector.collect())
    assert family.name == "coach_celery_queue_messages"
    assert [(s.labels, s.value) for s in family.samples] == [({"queue": "coach"}, 7.0)]
    client.length = RedisConnectionError("down")
    [family] = list(collector.collect())
    assert family.samples == []  # absent, for an alert to notice; the scrape still answers


def test_task_outcomes_map_to_state_labels() -> None:
    from worker import observability  # noqa: PLC0415
    from worker.tasks import cleanup  # noqa: PLC0415

    def count(state: str) -> float:
        sample = f'coach_celery_tasks_total{{state="{state}",task="coach.cleanup"}}'
        return float(dict(_flat_samples()).get(sample, 0.0))

    before = {state: count(state) for state in ("started", "succeeded", "failed", "retried")}
    for state in ("RETRY", "FAILURE", "SUCCESS", "REJECTED"):
        observability._task_started(task_id=state, task=cleanup)
        observability._task_finished(task_id=state, task=cleanup, state=state)
    grew = {state: count(state) - before[state] for state in before}
    assert grew == {"started": 4, "succeeded": 1, "failed": 1, "retried": 1}
    assert structlog.contextvars.get_contextvars() == {}, "cleared after each task"


def _flat_samples() -> list[tuple[str, float]]:
    """This process's registry as (series, value): what embedded /metrics serves."""
    body = metrics.render()[0].decode()
    return [
        (line.rsplit(" ", 1)[0], float(line.rsplit(" ", 1)[1]))
        for line in body.splitlines()
        if line and not line.startswith("#")
    ]


# Logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    structlog.contextvars.clear_contextvars()
    log.configure(get_settings())


def test_log_lines_are_json_with_the_required_keys(
    embedded_env: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    settings = get_settings().model_copy(update={"environment": "test"})
    log.configure(settings)
    tracing.configure(settings)
    capsys.readouterr()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id="req-0123456789")
    logger = structlog.get_logger("tests.observability")

    logger.info(
        "secrets inside",
        password="hunter2",
        llm_api_key="sk-live-1",
        headers={"Authorization": "Bearer abc.def"},
        url="redis://:r3dis-pw@redis:6379/0",
        prompt_tokens=12,
    )
    with tracing.tracer.start_as_current_span("unit") as span:
        logger.info("inside a span")
        logging.getLogger("celery.app.trace").warning("a stdlib line with %s", "args")
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "10.0.0.1:5000", "GET", "/api/v1/snippets", "1.1", 200
        )
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a Python warning", UserWarning, stacklevel=1)
    try:
        raise ValueError("failed with token=tok-123")
    except ValueError:
        logger.exception("an error")

    out = capsys.readouterr().out
    lines = json_lines(out)
    events = {line["event"]: line for line in lines}
    assert len(lines) == 6, out
    assert {line["environment"] for line in lines} == {"test"}
    assert {line["service"] for line in lines} == {settings.service_name}
    assert {line["request_id"] for line in lines} == {"req-0123456789"}
    assert all(line["timestamp"].endswith("Z") for line in lines)

    span_ids = tracing.current_ids()
    assert span_ids is None, "outside the span now"
    context = span.get_span_context()
    in_span = [events["inside a span"], events["a stdlib line with args"]]
    access = next(line for line in lines if line["logger"] == "uvicorn.access")
    for line in [*in_span, access]:
        assert line["trace_id"] == f"{context.trace_id:032x}"
        assert line["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in events["secrets inside"]
    assert access["status"] == 200 and access["path"] == "/api/v1/snippets"
    assert next(line for line in lines if line["logger"] == "py.warnings")["level"] == "warning"

    secret = events["secrets inside"]
    assert secret["password"] == secret["llm_api_key"] == log.REDACTED
    assert secret["headers"] == {"Authorization": log.REDACTED}
    assert secret["url"] == f"redis://:{log.REDACTED}@redis:6379/0"
    assert secret["prompt_tokens"] == 12, "token counts are not secrets"
    error = events["an error"]
    assert error["level"] == "error" and error["exception"][0]["exc_type"] == "ValueError"
    for leaked in ("hunter2", "sk-live-1", "abc.def", "r3dis-pw", "tok-123"):
        assert leaked not in out


def test_request_log_lines_carry_the_request_and_trace_ids(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    accepted = client.post(
        "/api/v1/snippets", json={"title": "fib", "language": "python", "content": FIB}
    )
    asked = client.post("/api/v1/coach/ask", json=ASK, headers={"traceparent": TRACEPARENT})
    lines = json_lines(capsys.readouterr().out)

    indexed = next(line for line in lines if line["event"] == "snippet indexed")
    assert indexed["trace_id"] == accepted.headers["x-trace-id"]
    assert indexed["request_id"] == accepted.headers["x-request-id"]
    assert indexed["task_name"] == "coach.index_snippet" and indexed["task_id"]
    answered = next(line for line in lines if line["event"] == "question answered")
    assert answered["trace_id"] == CALLER_TRACE == asked.headers["x-trace-id"]
    assert answered["request_id"] == asked.headers["x-request-id"]


def test_log_levels_per_logger_and_a_rotating_log_file(
    embedded_env: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    path = embedded_env / "logs" / "coach.log"
    settings = get_settings().model_copy(
        update={
            "log_levels": "tests.noisy=ERROR",
            "log_file": path,
            "log_file_max_bytes": 2048,
            "log_file_backup_count": 2,
        }
    )
    log.configure(settings)
    noisy, other = logging.getLogger("tests.noisy"), logging.getLogger("tests.other")
    noisy.warning("suppressed")
    noisy.error("kept")
    for n in range(40):
        other.info("line %d %s", n, "x" * 100)
    printed = json_lines(capsys.readouterr().out)
    assert [line["event"] for line in printed if line["logger"] == "tests.noisy"] == ["kept"]
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "coach.log",
        "coach.log.1",
        "coach.log.2",
    ]
    assert json_lines(path.read_text())[-1]["event"].startswith("line 39 ")
    log.configure(get_settings())
    assert noisy.level == logging.NOTSET, "a later configuration without it resets the level"


def test_logging_settings_are_validated() -> None:
    assert Settings(log_level="debug").log_level == "DEBUG"
    assert Settings(log_levels=" celery=debug, sqlalchemy.engine=INFO ").logger_levels == {
        "celery": "DEBUG",
        "sqlalchemy.engine": "INFO",
    }
    for bad in ("celery", "celery=LOUD", "=INFO"):
        with pytest.raises(ValidationError, match="LOG_LEVELS"):
            Settings(log_levels=bad)
    with pytest.raises(ValidationError, match="LOG_LEVEL"):
        Settings(log_level="verbose")


# Traces, exported over OTLP/HTTP


def test_an_llm_api_call_is_a_genai_client_span_with_its_histograms(
    embedded_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OpenTelemetry GenAI conventions: span `chat {model}`, gen_ai.* and server.*
    attributes, error.type on failure, and gen_ai.client.* histograms with the same."""
    messages = [Message("system", "Be brief."), Message("user", "What is a closure, exactly?")]
    llm = FakeLLMServer(free_port()).start()
    settings = Settings(
        llm_base_url=llm.base_url,
        llm_api_key=SecretStr(API_KEY),
        llm_model="fake-coach-1",
        llm_provider_name="groq",  # an OpenAI-compatible provider of another name
        llm_max_retries=0,
    )
    nowhere = settings.model_copy(update={"llm_base_url": f"http://127.0.0.1:{free_port()}/v1"})
    try:
        with otlp_receiver() as receiver:
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
            tracing.configure(settings)
            try:
                completion = asyncio.run(OpenAIChat(settings).generate(messages, context=[]))
                llm.control.down = True
                with pytest.raises(LLMError):
                    asyncio.run(OpenAIChat(settings).generate(messages, context=[]))
                with pytest.raises(LLMError):
                    asyncio.run(OpenAIChat(nowhere).generate(messages, context=[]))
                assert tracing.force_flush()
            finally:
                monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
                tracing.configure(get_settings())
    finally:
        llm.stop()

    call = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "groq",
        "gen_ai.request.model": "fake-coach-1",
        "server.address": "127.0.0.1",
    }
    spans = [s for s in receiver.spans() if s.name == chat_span("fake-coach-1")]
    assert [(s.kind, s.status, s.attributes.get("error.type")) for s in spans] == [
        ("client", "unset", None),
        ("client", "error", "503"),
        ("client", "error", "httpx.ConnectError"),
    ]
    ok = spans[0].attributes
    assert ok == call | {
        "server.port": llm.port,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": settings.llm_max_tokens,
        "gen_ai.response.model": "fake-coach-1",
        "gen_ai.response.id": "chatcmpl-fake",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": completion.prompt_tokens,
        "gen_ai.usage.output_tokens": completion.completion_tokens,
    }, "and nothing else: no prompt or answer text"

    tokens = {
        p.attributes["gen_ai.token.type"]: p for p in receiver.points("gen_ai.client.token.usage")
    }
    assert {kind: (p.sum, p.count) for kind, p in tokens.items()} == {
        "input": (completion.prompt_tokens, 1),
        "output": (completion.completion_tokens, 1),
    }, "failed calls count no tokens"
    assert tokens["input"].attributes == call | {
        "server.port": llm.port,
        "gen_ai.response.model": "fake-coach-1",
        "gen_ai.token.type": "input",
    }
    assert tokens["input"].bounds == tracing.TOKEN_BUCKETS
    durations = {
        p.attributes.get("error.type"): p
        for p in receiver.points("gen_ai.client.operation.duration")
    }
    assert {error: p.count for error, p in durations.items()} == {
        None: 1,
        "503": 1,
        "httpx.ConnectError": 1,
    }
    assert durations[None].attributes["gen_ai.response.model"] == "fake-coach-1"
    assert "gen_ai.response.model" not in durations["503"].attributes
    assert durations["503"].unit == "s" and durations["503"].bounds == tracing.DURATION_BUCKETS
    assert {p.service for p in receiver.points()} == {settings.service_name}


@pytest.fixture
def traced(
    embedded_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, OtlpReceiver]]:
    from backend.app import create_app  # noqa: PLC0415

    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        get_settings.cache_clear()
        try:
            with keyed_client(create_app(get_settings()), raise_server_exceptions=False) as client:
                yield client, receiver
        finally:
            monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
            tracing.configure(get_settings())  # export nowhere again, before the receiver goes


def test_spans_reach_an_otlp_receiver_as_one_trace_per_request(
    traced: tuple[TestClient, OtlpReceiver],
) -> None:
    client, receiver = traced
    accepted = client.post(
        "/api/v1/snippets", json={"title": "fib", "language": "python", "content": FIB}
    )
    asked = client.post("/api/v1/coach/ask", json=ASK, headers={"traceparent": TRACEPARENT})
    assert asked.status_code == 200 and asked.json()["trace_id"] == CALLER_TRACE
    assert tracing.force_flush()
    receiver.wait_for(
        lambda spans: {"coach.generate", "POST /api/v1/snippets"} <= {s.name for s in spans},
        seconds=10,
        what="the ask's and the upload's spans exported",
    )

    ask = {s.name: s for s in receiver.trace(CALLER_TRACE)}
    server = ask["POST /api/v1/coach/ask"]
    assert server.kind == "server" and server.parent_id == CALLER_SPAN
    assert server.service == "coach-backend"
    # The agent runs in the coach.ask task (eager here): its steps hang under the task's span,
    # which hangs under the request's — one trace from the API into every step.
    run_span = ask["run/coach.ask"]
    assert run_span.kind == "consumer"
    assert run_span.parent_id in {s.span_id for s in ask.values()}
    for step in ("coach.retrieve", "coach.prompt", "coach.generate"):
        assert ask[step].parent_id == run_span.span_id, step
    generate = ask["coach.generate"].attributes
    assert generate["coach.llm.provider"] == "extractive"
    assert generate["coach.llm.model"] == generate["coach.llm.response_model"] == "extractive-v1"
    # The offline answerer is no model and calls nothing: no GenAI span, attribute or metric.
    assert not [s.name for s in ask.values() if s.name.startswith("chat ")]
    assert not [
        s.name for s in receiver.spans() if any(k.startswith("gen_ai.") for k in s.attributes)
    ]
    assert not [p.metric for p in receiver.points() if p.metric.startswith("gen_ai.")]
    retrieve = ask["coach.retrieve"].attributes
    assert retrieve["coach.retrieve.top_k"] == 3 and retrieve["coach.retrieve.hits"] == 1
    assert any(
        "db.system" in s.attributes or "db.system.name" in s.attributes for s in ask.values()
    )

    upload_trace = {s.name: s for s in receiver.trace(accepted.headers["x-trace-id"])}
    assert upload_trace["POST /api/v1/snippets"].kind == "server"
    assert "objects.put" in upload_trace
    # Eager in embedded mode: the task runs inside the request, in its trace.
    assert upload_trace["run/coach.index_snippet"].kind == "consumer"
    assert "/metrics" not in {s.attributes.get("url.path") for s in receiver.spans()}
